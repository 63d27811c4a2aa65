//! The invpn wire codec: checked views over messages and their encoders.
//!
//! A message on the wire is `len (u16 BE) | type | body`, where `len` counts
//! the type byte and the body. Parsing takes the bytes after the length
//! prefix; every length is checked once, up front, and a malformed message is
//! a [`WireError`], never a panic. Encoders write the length prefix too.
//! Offsets are from the type byte, as in PROTOCOL.md §3.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::mac::Mac;

/// Size of the length prefix.
pub const LEN_PREFIX: usize = 2;
/// Largest `len` the 16-bit prefix can carry.
pub const MAX_MSG_LEN: usize = u16::MAX as usize;
/// Protocol version carried by announcements and health messages.
pub const VERSION: u8 = 1;

/// Message types (PROTOCOL.md §3).
pub mod kind {
    /// Direct announce: a neighbour announcing itself.
    pub const DIRECT_ANNOUNCE: u8 = 0x00;
    /// Announce relayed through the mesh, with the address seen by the first hop.
    pub const ANNOUNCE: u8 = 0x01;
    /// Health request (mesh trace), only on invpnd links.
    pub const HEALTH_REQUEST: u8 = 0x02;
    /// Health response, routed to the requester.
    pub const HEALTH_RESPONSE: u8 = 0x03;
    /// Unicast Ethernet frame.
    pub const UNICAST: u8 = 0x80;
    /// Broadcast (group-addressed) Ethernet frame.
    pub const BROADCAST: u8 = 0x81;
    /// invpnd extension: hello, the first message on an invpnd link, saying
    /// what the sender accepts. Never sent to 0.4 (which ignores it anyway).
    pub const HELLO: u8 = 0x04;
    /// invpnd extension: a unicast frame with its virtio-net offload header
    /// (a TCP super-frame to be segmented by the receiving kernel), sent
    /// only to neighbours whose hello says they accept it.
    pub const OFFLOADED: u8 = 0x82;
    /// invpnd extension: one of the two copies of a unicast frame of a
    /// sparse flow, sent on two connections of a link with the same
    /// sequence number; the receiver keeps the first to arrive
    /// (`core::lane`). Sent only to neighbours whose hello says they
    /// accept it.
    pub const TWIN: u8 = 0x83;
    /// invpnd extension: prunes and grafts of the flood tree. The sender
    /// asks not to be sent (prune), or to be sent again (graft), the
    /// announcements, broadcasts and health requests of the listed sources
    /// (the flood tree: `core::routes`, `core::engine`). Sent only to
    /// neighbours whose hello says they honour it.
    pub const PRUNE: u8 = 0x05;
    /// invpnd extension: the sender's route table, as the announcements
    /// that made it, sent once to a neighbour whose hello asks for it when
    /// their link comes up: a node that joins knows the mesh at once
    /// instead of after an announce interval.
    pub const ROUTES: u8 = 0x06;
    /// invpnd extension: the nodes whose routes the sender lost with its
    /// link to a neighbour; a neighbour that has a route to any of them
    /// that leads neither back to the sender nor through that neighbour
    /// answers with a `0x06` of those routes.
    pub const ROUTE_REQUEST: u8 = 0x07;
    /// invpnd extension: the nodes asked to announce themselves again,
    /// passed on along the routes to each of them: a neighbour asked for
    /// routes it could not give (its own were repaired after a link went,
    /// and may lead back) asks their nodes instead, whose new
    /// announcements give every node a route again.
    pub const ANNOUNCE_REQUEST: u8 = 0x08;

    /// A short name for logs and counters.
    pub fn name(k: u8) -> &'static str {
        match k {
            DIRECT_ANNOUNCE => "direct-announce",
            ANNOUNCE => "announce",
            HEALTH_REQUEST => "health-request",
            HEALTH_RESPONSE => "health-response",
            UNICAST => "unicast",
            BROADCAST => "broadcast",
            HELLO => "hello",
            OFFLOADED => "offloaded",
            TWIN => "twin",
            PRUNE => "prune",
            ROUTES => "routes",
            ROUTE_REQUEST => "route-request",
            ANNOUNCE_REQUEST => "announce-request",
            _ => "unknown",
        }
    }
}

/// Address type octet of an announce.
pub mod addr_type {
    /// No address: the node accepts no connections.
    pub const NONE: u8 = 0;
    /// 4-byte IPv4 address.
    pub const V4: u8 = 1;
    /// 16-byte IPv6 address.
    pub const V6: u8 = 2;
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// `len = 0`: a message without even a type byte.
    Empty,
    /// The body ends before `field` is complete.
    Truncated {
        /// The message type.
        kind: u8,
        /// The field cut short.
        field: &'static str,
    },
    /// Bytes after the last field of a fixed-layout message.
    Trailing {
        /// The message type.
        kind: u8,
        /// How many bytes too many.
        extra: usize,
    },
    /// An announce address type other than 0, 1 or 2.
    BadAddressType(u8),
    /// A list of MACs whose byte length is not a multiple of 6.
    Misaligned {
        /// The message type.
        kind: u8,
        /// The list.
        field: &'static str,
    },
    /// An Ethernet payload shorter than its EtherType.
    RuntFrame {
        /// The message type.
        kind: u8,
    },
    /// An offloaded frame whose header does not fit the frame.
    BadOffload(&'static str),
}

impl WireError {
    /// The labels of every class, in [`WireError::index`] order.
    pub const LABELS: [&'static str; 7] = [
        "empty",
        "truncated",
        "trailing_bytes",
        "bad_address_type",
        "misaligned_mac_list",
        "runt_frame",
        "bad_offload",
    ];

    /// The class's position in [`WireError::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            WireError::Empty => 0,
            WireError::Truncated { .. } => 1,
            WireError::Trailing { .. } => 2,
            WireError::BadAddressType(_) => 3,
            WireError::Misaligned { .. } => 4,
            WireError::RuntFrame { .. } => 5,
            WireError::BadOffload(_) => 6,
        }
    }

    /// A stable, short label, used for counters.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Empty => write!(f, "empty message (len=0)"),
            WireError::Truncated { kind: k, field } => {
                write!(f, "{} message truncated in {field}", kind::name(*k))
            }
            WireError::Trailing { kind: k, extra } => {
                write!(f, "{} message has {extra} trailing bytes", kind::name(*k))
            }
            WireError::BadAddressType(t) => write!(f, "announce with unknown address type {t}"),
            WireError::Misaligned { kind: k, field } => {
                write!(f, "{} message: {field} is not a whole number of MACs", kind::name(*k))
            }
            WireError::RuntFrame { kind: k } => {
                write!(f, "{} message carries a frame without an EtherType", kind::name(*k))
            }
            WireError::BadOffload(why) => write!(f, "offloaded frame: {why}"),
        }
    }
}

impl std::error::Error for WireError {}

/// A cursor over untrusted bytes. Every read is checked; a short read is an
/// error naming the field.
struct Reader<'a> {
    kind: u8,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated { kind: self.kind, field });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn mac(&mut self, field: &'static str) -> Result<Mac, WireError> {
        let b = self.take(6, field)?;
        Ok(Mac([b[0], b[1], b[2], b[3], b[4], b[5]]))
    }
    fn macs(&mut self, count: usize, field: &'static str) -> Result<MacList<'a>, WireError> {
        Ok(MacList(self.take(count * 6, field)?))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
    fn rest_macs(&mut self, field: &'static str) -> Result<MacList<'a>, WireError> {
        let r = self.rest();
        if r.len() % 6 != 0 {
            return Err(WireError::Misaligned { kind: self.kind, field });
        }
        Ok(MacList(r))
    }
    fn end(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing { kind: self.kind, extra: self.rest.len() })
        }
    }
}

/// A checked list of 6-byte MACs borrowed from a message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MacList<'a>(&'a [u8]);

impl<'a> MacList<'a> {
    /// Number of MACs.
    pub fn len(&self) -> usize {
        self.0.len() / 6
    }
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The MACs in order.
    pub fn iter(&self) -> impl Iterator<Item = Mac> + 'a {
        self.0.chunks_exact(6).filter_map(Mac::from_slice)
    }
    /// The raw bytes (a multiple of 6).
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl fmt::Debug for MacList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The address carried by an announce (`0x01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncedAddr {
    /// Type 0: the node takes no incoming connections.
    None,
    /// Type 1.
    V4(Ipv4Addr),
    /// Type 2.
    V6(Ipv6Addr),
}

impl AnnouncedAddr {
    /// The address of a peer as seen on a TCP connection; an IPv4-mapped
    /// IPv6 address becomes IPv4.
    pub fn from_ip(ip: IpAddr) -> AnnouncedAddr {
        match ip {
            IpAddr::V4(a) => AnnouncedAddr::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => AnnouncedAddr::V4(v4),
                None => AnnouncedAddr::V6(a),
            },
        }
    }

    /// As an IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            AnnouncedAddr::None => None,
            AnnouncedAddr::V4(a) => Some(IpAddr::V4(a)),
            AnnouncedAddr::V6(a) => Some(IpAddr::V6(a)),
        }
    }
}

/// `0x00`: a neighbour announcing itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectAnnounce {
    /// The protocol version byte (0.4 sends 1).
    pub version: u8,
    /// Its id: the sender's clock in ms, made unique (`core::ids`).
    pub id: u64,
    /// The neighbour's MAC.
    pub mac: Mac,
    /// The port it listens on (0: none).
    pub port: u16,
}

/// `0x01`: an announcement relayed through the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    /// The protocol version byte (0.4 sends 1).
    pub version: u8,
    /// The announcing node's id for it (its clock in ms, made unique).
    pub id: u64,
    /// The node announced.
    pub mac: Mac,
    /// The port it listens on (0: none).
    pub port: u16,
    /// Its address as the first relay saw it, if any.
    pub addr: AnnouncedAddr,
}

impl Announce {
    /// The address to dial the announced node on, if it gave one. An
    /// IPv4-mapped IPv6 address (0.4 on Qt 5 relays such addresses for
    /// neighbours that dialled it) is returned as IPv4.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.addr.ip().map(|ip| SocketAddr::new(ip.to_canonical(), self.port))
    }
}

/// `0x02`: a health request flooded from `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthRequest<'a> {
    /// The protocol version byte (0.4 sends 1).
    pub version: u8,
    /// The origin's id for it.
    pub id: u64,
    /// The node that asks, to which answers go.
    pub origin: Mac,
    /// MACs of the nodes that forwarded the request, in order.
    pub trace: MacList<'a>,
}

/// `0x03`: one node's answer to a health request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthResponse<'a> {
    /// The protocol version byte (0.4 sends 1).
    pub version: u8,
    /// The requester.
    pub dst: Mac,
    /// The node answering.
    pub responder: Mac,
    /// The id of the request answered.
    pub request_id: u64,
    /// The responder's linked neighbours.
    pub links: MacList<'a>,
    /// The responder's routes as (target, next hop) pairs.
    pub routes: RoutePairs<'a>,
    /// The request's traceroute as it reached the responder.
    pub trace: MacList<'a>,
    /// The responder, then each node that forwarded the response.
    pub reverse: MacList<'a>,
}

/// A checked list of (target, next hop) MAC pairs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RoutePairs<'a>(&'a [u8]);

impl<'a> RoutePairs<'a> {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len() / 12
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (Mac, Mac)> + 'a {
        self.0
            .chunks_exact(12)
            .filter_map(|c| Some((Mac::from_slice(c)?, Mac::from_slice(c.get(6..)?)?)))
    }
}

impl fmt::Debug for RoutePairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// `0x80`: a unicast Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unicast<'a> {
    /// The frame's destination MAC.
    pub dst: Mac,
    /// Its source MAC.
    pub src: Mac,
    /// The whole Ethernet frame (dst, src, EtherType, ...): exactly what the
    /// TAP takes.
    pub frame: &'a [u8],
}

/// `0x81`: a broadcast frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broadcast<'a> {
    /// The source's id for it, for de-duplication.
    pub id: u64,
    /// The frame's source MAC (the destination is broadcast).
    pub src: Mac,
    /// The Ethernet payload from the EtherType on.
    pub payload: &'a [u8],
}

/// `0x04`: what an invpnd neighbour accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version byte (0.4 sends 1).
    pub version: u8,
    /// [`hello_flags`] bits.
    pub flags: u32,
    /// The sender's announce interval (ms), if it says (a field appended
    /// after the flags): the link's silence timer need not wait for two
    /// of its announcements to learn it (`core::liveness`).
    pub interval_ms: Option<u32>,
}

/// Bits of a hello's flags.
pub mod hello_flags {
    /// The sender accepts `0x82` offloaded frames.
    pub const OFFLOADED: u32 = 1;
    /// The sender takes a lane: a second connection, dialled by the side
    /// that dialled the link, for the frames of sparse flows
    /// (`core::lane`).
    pub const LANES: u32 = 2;
    /// The sender accepts `0x83` twin frames.
    pub const TWINS: u32 = 4;
    /// The sender honours `0x05` prunes and grafts: it floods a source's
    /// announcements, broadcasts and health requests only to the
    /// neighbours that have not pruned it.
    pub const TREE: u32 = 8;
    /// The sender takes a `0x06` route table when the link comes up, and
    /// answers `0x07` route requests.
    pub const ROUTES: u32 = 16;
    /// The sender dialled this link on demand, as a direct link to a node
    /// it sent much traffic through a relay (`core::direct`): the far end
    /// does not count it against `max_links` (while it has room for
    /// direct links), and either end closes it once idle.
    pub const DIRECT: u32 = 32;
}

/// `0x07`: nodes whose routes a neighbour lost with a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRequest<'a> {
    /// The protocol version byte.
    pub version: u8,
    /// The neighbour at the far end of the link that went: routes through
    /// it are no answer.
    pub lost: Mac,
    /// The nodes asked for.
    pub nodes: MacList<'a>,
}

/// `0x08`: nodes asked to announce themselves again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceRequest<'a> {
    /// The protocol version byte.
    pub version: u8,
    /// How many more hops the request may be passed on.
    pub hops: u8,
    /// The nodes asked.
    pub nodes: MacList<'a>,
}

/// `0x06`: a neighbour's route table, as announcements (checked when
/// parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routes<'a> {
    /// The protocol version byte, that of every announcement in it.
    pub version: u8,
    entries: &'a [u8],
}

impl Routes<'_> {
    /// The announcements, in order.
    pub fn iter(&self) -> impl Iterator<Item = Announce> + '_ {
        let mut r = Reader { kind: kind::ROUTES, rest: self.entries };
        let version = self.version;
        std::iter::from_fn(move || {
            if r.rest.is_empty() {
                return None;
            }
            announce_body(&mut r, version).ok()
        })
    }
}

/// `0x05`: which sources' floods the sender no longer wants from this
/// link (prune), and which it wants again (graft).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune<'a> {
    /// The protocol version byte.
    pub version: u8,
    /// Sources not to be flooded to the sender any more.
    pub prune: MacList<'a>,
    /// Sources to be flooded to the sender again.
    pub graft: MacList<'a>,
}

/// `0x83`: a unicast frame sent twice, with its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Twin<'a> {
    /// The sender's sequence number for the pair of copies (per link).
    pub seq: u32,
    /// The frame, as a `0x80` would carry it.
    pub unicast: Unicast<'a>,
}

/// `0x82`: a unicast frame with its offload header, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloaded<'a> {
    /// How the frame is to be segmented or checksummed.
    pub hdr: super::offload::VnetHdr,
    /// The frame's destination MAC.
    pub dst: Mac,
    /// Its source MAC.
    pub src: Mac,
    /// The whole Ethernet frame (a TCP super-frame, or a frame whose
    /// checksum is still partial).
    pub frame: &'a [u8],
}

/// A parsed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// `0x00`.
    DirectAnnounce(DirectAnnounce),
    /// `0x01`.
    Announce(Announce),
    /// `0x02`.
    HealthRequest(HealthRequest<'a>),
    /// `0x03`.
    HealthResponse(HealthResponse<'a>),
    /// `0x80`.
    Unicast(Unicast<'a>),
    /// `0x81`.
    Broadcast(Broadcast<'a>),
    /// `0x04` (invpnd links only).
    Hello(Hello),
    /// `0x82` (invpnd links only).
    Offloaded(Offloaded<'a>),
    /// `0x83` (invpnd links only).
    Twin(Twin<'a>),
    /// `0x05` (invpnd links only).
    Prune(Prune<'a>),
    /// `0x06` (invpnd links only).
    Routes(Routes<'a>),
    /// `0x07` (invpnd links only).
    RouteRequest(RouteRequest<'a>),
    /// `0x08`, invpnd only.
    AnnounceRequest(AnnounceRequest<'a>),
    /// A type this implementation does not know; ignored (PROTOCOL.md §3).
    Unknown(u8),
}

/// An announcement after its version octet (`0x01`, and each entry of a
/// `0x06`).
fn announce_body(r: &mut Reader<'_>, version: u8) -> Result<Announce, WireError> {
    let id = r.u64("id")?;
    let mac = r.mac("mac")?;
    let port = r.u16("port")?;
    let addr = match r.u8("address type")? {
        addr_type::NONE => AnnouncedAddr::None,
        addr_type::V4 => {
            let b = r.take(4, "address")?;
            AnnouncedAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        addr_type::V6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(r.take(16, "address")?);
            AnnouncedAddr::V6(Ipv6Addr::from(a))
        }
        other => return Err(WireError::BadAddressType(other)),
    };
    Ok(Announce { version, id, mac, port, addr })
}

/// Parses one message: `msg` is what follows the length prefix (type + body).
pub fn parse(msg: &[u8]) -> Result<Message<'_>, WireError> {
    let (&k, body) = msg.split_first().ok_or(WireError::Empty)?;
    let mut r = Reader { kind: k, rest: body };
    let m = match k {
        kind::DIRECT_ANNOUNCE => {
            let m = DirectAnnounce {
                version: r.u8("version")?,
                id: r.u64("id")?,
                mac: r.mac("mac")?,
                port: r.u16("port")?,
            };
            r.end()?;
            Message::DirectAnnounce(m)
        }
        kind::ANNOUNCE => {
            let version = r.u8("version")?;
            let a = announce_body(&mut r, version)?;
            r.end()?;
            Message::Announce(a)
        }
        kind::ROUTE_REQUEST => Message::RouteRequest(RouteRequest {
            version: r.u8("version")?,
            lost: r.mac("lost neighbour")?,
            nodes: r.rest_macs("nodes")?,
        }),
        kind::ANNOUNCE_REQUEST => Message::AnnounceRequest(AnnounceRequest {
            version: r.u8("version")?,
            hops: r.u8("hops")?,
            nodes: r.rest_macs("nodes")?,
        }),
        kind::ROUTES => {
            let version = r.u8("version")?;
            let entries = r.rest;
            while !r.rest.is_empty() {
                announce_body(&mut r, version)?;
            }
            Message::Routes(Routes { version, entries })
        }
        kind::HEALTH_REQUEST => Message::HealthRequest(HealthRequest {
            version: r.u8("version")?,
            id: r.u64("id")?,
            origin: r.mac("origin")?,
            trace: r.rest_macs("traceroute")?,
        }),
        kind::HEALTH_RESPONSE => {
            let version = r.u8("version")?;
            let dst = r.mac("destination")?;
            let responder = r.mac("responder")?;
            let request_id = r.u64("request id")?;
            let n = r.u16("link count")? as usize;
            let links = r.macs(n, "links")?;
            let n = r.u16("route count")? as usize;
            let routes = RoutePairs(r.take(n * 12, "routes")?);
            let n = r.u16("hop count")? as usize;
            let trace = r.macs(n, "traceroute")?;
            let reverse = r.rest_macs("reverse traceroute")?;
            Message::HealthResponse(HealthResponse {
                version,
                dst,
                responder,
                request_id,
                links,
                routes,
                trace,
                reverse,
            })
        }
        kind::UNICAST => {
            let dst = r.mac("destination")?;
            let src = r.mac("source")?;
            if r.rest.len() < 2 {
                return Err(WireError::RuntFrame { kind: k });
            }
            Message::Unicast(Unicast { dst, src, frame: body })
        }
        kind::BROADCAST => {
            let id = r.u64("id")?;
            let src = r.mac("source")?;
            let payload = r.rest();
            if payload.len() < 2 {
                return Err(WireError::RuntFrame { kind: k });
            }
            Message::Broadcast(Broadcast { id, src, payload })
        }
        kind::HELLO => {
            // Later versions may append fields: the rest is ignored.
            let (version, flags) = (r.u8("version")?, r.u32("flags")?);
            let interval_ms = r.u32("interval").ok();
            let h = Hello { version, flags, interval_ms };
            Message::Hello(h)
        }
        kind::OFFLOADED => {
            let mut h = [0u8; super::offload::VNET_HDR_LEN];
            h.copy_from_slice(r.take(super::offload::VNET_HDR_LEN, "offload header")?);
            let hdr = super::offload::VnetHdr::from_wire(&h);
            let frame = r.rest();
            let (Some(dst), Some(src)) =
                (Mac::from_slice(frame), frame.get(6..).and_then(Mac::from_slice))
            else {
                return Err(WireError::RuntFrame { kind: k });
            };
            super::offload::check(&hdr, frame).map_err(|e| WireError::BadOffload(e.0))?;
            Message::Offloaded(Offloaded { hdr, dst, src, frame })
        }
        kind::TWIN => {
            let seq = r.u32("sequence number")?;
            let frame = r.rest;
            let dst = r.mac("destination")?;
            let src = r.mac("source")?;
            if r.rest.len() < 2 {
                return Err(WireError::RuntFrame { kind: k });
            }
            Message::Twin(Twin { seq, unicast: Unicast { dst, src, frame } })
        }
        kind::PRUNE => {
            let version = r.u8("version")?;
            let n = r.u16("prune count")? as usize;
            let prune = r.macs(n, "pruned sources")?;
            let graft = r.rest_macs("grafted sources")?;
            Message::Prune(Prune { version, prune, graft })
        }
        other => Message::Unknown(other),
    };
    Ok(m)
}

/// Splits the stream bytes `buf` into its first message (without the length
/// prefix) and the rest, or `None` if `buf` does not hold a whole message.
pub fn split_message(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_be_bytes([*buf.first()?, *buf.get(1)?]) as usize;
    let whole = buf.get(..LEN_PREFIX + len)?;
    Some((&whole[LEN_PREFIX..], &buf[LEN_PREFIX + len..]))
}

/// What a whole message (length prefix included) carries, as far as a
/// queue needs to know: control messages are served first and never
/// dropped for frames; frames are hashed into flows and may be dropped or
/// ECN-marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    /// Announcements, health messages, hello, unknown types.
    Control,
    /// An Ethernet frame (`0x80`, `0x81`, `0x82`) whose EtherType starts at
    /// this offset in the message (the payload runs to its end). For `0x81`
    /// the destination MAC is not carried; the source MAC is the 6 bytes
    /// before the offset in every case.
    Frame {
        /// Offset of the EtherType.
        ethertype_at: usize,
    },
}

/// The type of a whole message (`len | type | body`), if it has one.
pub fn kind_of(msg: &[u8]) -> Option<u8> {
    msg.get(LEN_PREFIX).copied()
}

/// Whether a message type is a control message (announcements, health,
/// hello: below 0x80) rather than a frame.
pub fn is_control(kind: u8) -> bool {
    kind < 0x80
}

/// Parses a whole message (`len | type | body`, as queued for a link).
pub fn parse_whole(msg: &[u8]) -> Result<Message<'_>, WireError> {
    parse(msg.get(LEN_PREFIX..).unwrap_or_default())
}

/// Classifies a whole message (`len | type | body`). A message too short
/// for its frame header is [`Carries::Control`] (it is not sent anyway).
pub fn carries(msg: &[u8]) -> Carries {
    let at = match msg.get(LEN_PREFIX) {
        Some(&kind::UNICAST) => LEN_PREFIX + 1 + 12,
        Some(&kind::BROADCAST) => LEN_PREFIX + 1 + 8 + 6,
        Some(&kind::OFFLOADED) => LEN_PREFIX + 1 + super::offload::VNET_HDR_LEN + 12,
        Some(&kind::TWIN) => LEN_PREFIX + 1 + 4 + 12,
        _ => return Carries::Control,
    };
    if msg.len() < at + 2 {
        return Carries::Control;
    }
    Carries::Frame { ethertype_at: at }
}

/// Whether a whole message is a `0x82` offloaded frame.
pub fn is_offloaded(msg: &[u8]) -> bool {
    msg.get(LEN_PREFIX) == Some(&kind::OFFLOADED)
}

/// Appends the length prefix and type byte of a message whose body will be
/// `body_len` bytes; returns `false`, writing nothing, if that is more than
/// the 16-bit length can say.
fn header(out: &mut Vec<u8>, k: u8, body_len: usize) -> bool {
    let len = body_len + 1;
    if len > MAX_MSG_LEN {
        return false;
    }
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(k);
    true
}

/// Encodes a `0x00` direct announce (20 bytes with the prefix).
pub fn encode_direct_announce(out: &mut Vec<u8>, a: &DirectAnnounce) {
    header(out, kind::DIRECT_ANNOUNCE, 17);
    out.push(a.version);
    out.extend_from_slice(&a.id.to_be_bytes());
    out.extend_from_slice(&a.mac.0);
    out.extend_from_slice(&a.port.to_be_bytes());
}

/// Encodes a `0x01` announce.
pub fn encode_announce(out: &mut Vec<u8>, a: &Announce) {
    header(out, kind::ANNOUNCE, 1 + announce_body_len(a));
    out.push(a.version);
    put_announce_body(out, a);
}

/// The length of an announcement after its version octet.
fn announce_body_len(a: &Announce) -> usize {
    17 + match a.addr {
        AnnouncedAddr::None => 0,
        AnnouncedAddr::V4(_) => 4,
        AnnouncedAddr::V6(_) => 16,
    }
}

fn put_announce_body(out: &mut Vec<u8>, a: &Announce) {
    out.extend_from_slice(&a.id.to_be_bytes());
    out.extend_from_slice(&a.mac.0);
    out.extend_from_slice(&a.port.to_be_bytes());
    match a.addr {
        AnnouncedAddr::None => out.push(addr_type::NONE),
        AnnouncedAddr::V4(ip) => {
            out.push(addr_type::V4);
            out.extend_from_slice(&ip.octets());
        }
        AnnouncedAddr::V6(ip) => {
            out.push(addr_type::V6);
            out.extend_from_slice(&ip.octets());
        }
    }
}

/// Encodes `0x06` messages carrying `routes` (announcements of protocol
/// version [`VERSION`]), as many as it takes, appending each whole message
/// to `out`.
pub fn encode_routes(out: &mut Vec<Vec<u8>>, routes: impl IntoIterator<Item = Announce>) {
    let mut body: Vec<u8> = Vec::new();
    let flush = |body: &mut Vec<u8>, out: &mut Vec<Vec<u8>>| {
        if !body.is_empty() {
            let mut m = Vec::with_capacity(LEN_PREFIX + 2 + body.len());
            header(&mut m, kind::ROUTES, 1 + body.len());
            m.push(VERSION);
            m.append(body);
            out.push(m);
        }
    };
    for a in routes {
        if 1 + 1 + body.len() + announce_body_len(&a) > MAX_MSG_LEN {
            flush(&mut body, out);
        }
        put_announce_body(&mut body, &a);
    }
    flush(&mut body, out);
}

/// Encodes a `0x02` health request. Returns `false` (writing nothing) if
/// the traceroute would not fit in one message.
pub fn encode_health_request(
    out: &mut Vec<u8>,
    version: u8,
    id: u64,
    origin: Mac,
    trace: &[u8],
) -> bool {
    if trace.len() % 6 != 0 || !header(out, kind::HEALTH_REQUEST, 15 + trace.len()) {
        return false;
    }
    out.push(version);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&origin.0);
    out.extend_from_slice(trace);
    true
}

/// The content of a `0x03` health response, for encoding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthReport {
    /// The requester.
    pub dst: Mac,
    /// The node answering.
    pub responder: Mac,
    /// The id of the request answered.
    pub request_id: u64,
    /// The responder's linked neighbours.
    pub links: Vec<Mac>,
    /// The responder's routes as (target, next hop) pairs.
    pub routes: Vec<(Mac, Mac)>,
    /// The request's traceroute as it reached the responder.
    pub trace: Vec<Mac>,
    /// The responder, then each node that forwarded the response.
    pub reverse: Vec<Mac>,
}

impl HealthReport {
    /// An owned copy of a parsed response.
    pub fn from_wire(r: &HealthResponse<'_>) -> HealthReport {
        HealthReport {
            dst: r.dst,
            responder: r.responder,
            request_id: r.request_id,
            links: r.links.iter().collect(),
            routes: r.routes.iter().collect(),
            trace: r.trace.iter().collect(),
            reverse: r.reverse.iter().collect(),
        }
    }
}

/// Encodes a `0x03` health response. Lists too long for one message are
/// cut (routes first, then links) so that the message always fits.
pub fn encode_health_response(out: &mut Vec<u8>, version: u8, r: &HealthReport) {
    const FIXED: usize = 1 + 6 + 6 + 8 + 2 + 2 + 2;
    let room = MAX_MSG_LEN - 1 - FIXED;
    let trace = &r.trace[..r.trace.len().min(room / 6)];
    let reverse = &r.reverse[..r.reverse.len().min((room - trace.len() * 6) / 6)];
    let mut left = room - (trace.len() + reverse.len()) * 6;
    let links = &r.links[..r.links.len().min(left / 6).min(u16::MAX as usize)];
    left -= links.len() * 6;
    let routes = &r.routes[..r.routes.len().min(left / 12).min(u16::MAX as usize)];
    let body = FIXED + (links.len() + trace.len() + reverse.len()) * 6 + routes.len() * 12;
    header(out, kind::HEALTH_RESPONSE, body);
    out.push(version);
    out.extend_from_slice(&r.dst.0);
    out.extend_from_slice(&r.responder.0);
    out.extend_from_slice(&r.request_id.to_be_bytes());
    out.extend_from_slice(&(links.len() as u16).to_be_bytes());
    links.iter().for_each(|m| out.extend_from_slice(&m.0));
    out.extend_from_slice(&(routes.len() as u16).to_be_bytes());
    for (t, n) in routes {
        out.extend_from_slice(&t.0);
        out.extend_from_slice(&n.0);
    }
    out.extend_from_slice(&(trace.len() as u16).to_be_bytes());
    trace.iter().for_each(|m| out.extend_from_slice(&m.0));
    reverse.iter().for_each(|m| out.extend_from_slice(&m.0));
}

/// Largest Ethernet frame a `0x80` message can carry.
pub const MAX_UNICAST_FRAME: usize = MAX_MSG_LEN - 1;
/// Largest Ethernet frame a `0x81` message can carry (its 6-byte
/// destination is replaced by the 8-byte id).
pub const MAX_BROADCAST_FRAME: usize = MAX_MSG_LEN - 1 - 8 + 6;

/// Encodes a `0x80` message carrying `frame` (dst, src, EtherType, ...).
/// Returns `false` if the frame is too short or too long.
pub fn encode_unicast(out: &mut Vec<u8>, frame: &[u8]) -> bool {
    if frame.len() < 14 || !header(out, kind::UNICAST, frame.len()) {
        return false;
    }
    out.extend_from_slice(frame);
    true
}

/// Encodes a `0x81` message for a group-addressed `frame`.
/// Returns `false` if the frame is too short or too long.
pub fn encode_broadcast(out: &mut Vec<u8>, id: u64, frame: &[u8]) -> bool {
    if frame.len() < 14 || !header(out, kind::BROADCAST, 8 + frame.len() - 6) {
        return false;
    }
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&frame[6..]);
    true
}

/// Offset at which a frame should be read into a buffer so that either a
/// `0x80` or a `0x81` message can be built around it in place
/// (see [`unicast_in_place`] and [`broadcast_in_place`]).
pub const FRAME_HEADROOM: usize = 5;

/// With an offload header in front of the frame: read the header and frame
/// at `VNET_READ_AT`; the frame then starts at [`VNET_FRAME_AT`], with room
/// before it for any message, `0x82` included (whose header goes where the
/// TAP's was).
pub const VNET_READ_AT: usize = 3;
/// Where the frame starts after an offload header read at [`VNET_READ_AT`].
pub const VNET_FRAME_AT: usize = VNET_READ_AT + super::offload::VNET_HDR_LEN;

/// Builds a `0x80` message around the frame at `buf[start..start + n]`
/// (`start` >= 3); returns the message's range in `buf`.
pub fn unicast_in_place(buf: &mut [u8], start: usize, n: usize) -> Option<std::ops::Range<usize>> {
    if !(14..=MAX_UNICAST_FRAME).contains(&n) || start < 3 || buf.len() < start + n {
        return None;
    }
    let len = (n + 1) as u16;
    buf[start - 3..start - 1].copy_from_slice(&len.to_be_bytes());
    buf[start - 1] = kind::UNICAST;
    Some(start - 3..start + n)
}

/// Builds a `0x81` message around the frame at `buf[start..start + n]`
/// (`start` >= 5): the frame's destination MAC is overwritten by the id.
pub fn broadcast_in_place(
    buf: &mut [u8],
    start: usize,
    n: usize,
    id: u64,
) -> Option<std::ops::Range<usize>> {
    if !(14..=MAX_BROADCAST_FRAME).contains(&n) || start < 5 || buf.len() < start + n {
        return None;
    }
    let len = (1 + 8 + n - 6) as u16;
    buf[start - 5..start - 3].copy_from_slice(&len.to_be_bytes());
    buf[start - 3] = kind::BROADCAST;
    buf[start - 2..start + 6].copy_from_slice(&id.to_be_bytes());
    Some(start - 5..start + n)
}

/// Largest frame a `0x82` message can carry.
pub const MAX_OFFLOADED_FRAME: usize = MAX_MSG_LEN - 1 - super::offload::VNET_HDR_LEN;

/// Builds a `0x82` message around an offload header and frame read at
/// `buf[VNET_READ_AT..]` (`n` bytes of frame after the header), writing the
/// header in wire order; `None` if the frame is too long for one message.
pub fn offloaded_in_place(
    buf: &mut [u8],
    hdr: &super::offload::VnetHdr,
    n: usize,
) -> Option<std::ops::Range<usize>> {
    if !(14..=MAX_OFFLOADED_FRAME).contains(&n) || buf.len() < VNET_FRAME_AT + n {
        return None;
    }
    let len = (1 + super::offload::VNET_HDR_LEN + n) as u16;
    buf[0..2].copy_from_slice(&len.to_be_bytes());
    buf[2] = kind::OFFLOADED;
    buf[VNET_READ_AT..VNET_FRAME_AT].copy_from_slice(&hdr.to_wire());
    Some(0..VNET_FRAME_AT + n)
}

/// Encodes a `0x82` message.
pub fn encode_offloaded(out: &mut Vec<u8>, hdr: &super::offload::VnetHdr, frame: &[u8]) -> bool {
    if frame.len() < 14 || !header(out, kind::OFFLOADED, super::offload::VNET_HDR_LEN + frame.len())
    {
        return false;
    }
    out.extend_from_slice(&hdr.to_wire());
    out.extend_from_slice(frame);
    true
}

/// Encodes a `0x83` twin around the frame of a whole `0x80` message
/// (`len | 0x80 | frame`); `false`, writing nothing, if `unicast` is not
/// one or the twin would be too long.
pub fn encode_twin(out: &mut Vec<u8>, seq: u32, unicast: &[u8]) -> bool {
    let Some(frame) = unicast.get(LEN_PREFIX + 1..) else { return false };
    if kind_of(unicast) != Some(kind::UNICAST)
        || frame.len() < 14
        || !header(out, kind::TWIN, 4 + frame.len())
    {
        return false;
    }
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(frame);
    true
}

/// The sequence number of a whole `0x83` message, if it is one.
pub fn twin_seq(msg: &[u8]) -> Option<u32> {
    if kind_of(msg) != Some(kind::TWIN) {
        return None;
    }
    Some(u32::from_be_bytes(msg.get(LEN_PREFIX + 1..LEN_PREFIX + 5)?.try_into().ok()?))
}

/// Turns a whole `0x83` message in place into the `0x80` message it
/// carries, returning the sequence number and the `0x80` (a sub-slice of
/// `msg`); `None` if `msg` is not a twin long enough to hold a frame
/// header.
pub fn untwin(msg: &mut [u8]) -> Option<(u32, &mut [u8])> {
    if msg.len() < LEN_PREFIX + 1 + 4 + 14 {
        return None;
    }
    let seq = twin_seq(msg)?;
    // `len | 0x83 | seq(4) | frame` -> `len - 4 | 0x80 | frame`, four bytes on
    let inner = &mut msg[4..];
    let len = (inner.len() - LEN_PREFIX) as u16;
    inner[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    inner[LEN_PREFIX] = kind::UNICAST;
    Some((seq, inner))
}

/// Most sources one `0x05` message lists.
pub const MAX_PRUNE_ENTRIES: usize = (MAX_MSG_LEN - 1 - 1 - 2) / 6;

/// Encodes `0x05` messages pruning `prune` and grafting `graft`, as many as
/// it takes (each lists at most [`MAX_PRUNE_ENTRIES`] sources), appending
/// each whole message to `out`.
pub fn encode_prunes(out: &mut Vec<Vec<u8>>, prune: &[Mac], graft: &[Mac]) {
    let (mut p, mut g) = (prune, graft);
    while !p.is_empty() || !g.is_empty() {
        let np = p.len().min(MAX_PRUNE_ENTRIES);
        let ng = g.len().min(MAX_PRUNE_ENTRIES - np);
        let mut m = Vec::with_capacity(LEN_PREFIX + 4 + 6 * (np + ng));
        header(&mut m, kind::PRUNE, 3 + 6 * (np + ng));
        m.push(VERSION);
        m.extend_from_slice(&(np as u16).to_be_bytes());
        for mac in p[..np].iter().chain(&g[..ng]) {
            m.extend_from_slice(&mac.0);
        }
        out.push(m);
        p = &p[np..];
        g = &g[ng..];
    }
}

/// Most nodes one `0x07` message asks for.
pub const MAX_REQUESTED: usize = (MAX_MSG_LEN - 1 - 1 - 6) / 6;

/// Encodes `0x07` route requests for `macs`, lost with the link to
/// `lost`, as many as it takes (each asks for at most [`MAX_REQUESTED`]).
pub fn encode_route_requests(out: &mut Vec<Vec<u8>>, lost: Mac, macs: &[Mac]) {
    for chunk in macs.chunks(MAX_REQUESTED) {
        let mut m = Vec::with_capacity(LEN_PREFIX + 8 + 6 * chunk.len());
        header(&mut m, kind::ROUTE_REQUEST, 7 + 6 * chunk.len());
        m.push(VERSION);
        m.extend_from_slice(&lost.0);
        chunk.iter().for_each(|mac| m.extend_from_slice(&mac.0));
        out.push(m);
    }
}

/// Most nodes one `0x08` message asks.
pub const MAX_ASKED: usize = (MAX_MSG_LEN - 1 - 1 - 1) / 6;

/// Encodes `0x08` announce requests to `macs`, to be passed on `hops`
/// more times, as many as it takes (each asks at most [`MAX_ASKED`]).
pub fn encode_announce_requests(out: &mut Vec<Vec<u8>>, hops: u8, macs: &[Mac]) {
    for chunk in macs.chunks(MAX_ASKED) {
        let mut m = Vec::with_capacity(LEN_PREFIX + 3 + 6 * chunk.len());
        header(&mut m, kind::ANNOUNCE_REQUEST, 2 + 6 * chunk.len());
        m.push(VERSION);
        m.push(hops);
        chunk.iter().for_each(|mac| m.extend_from_slice(&mac.0));
        out.push(m);
    }
}

/// Encodes a `0x04` hello.
pub fn encode_hello(out: &mut Vec<u8>, flags: u32) {
    header(out, kind::HELLO, 5);
    out.push(VERSION);
    out.extend_from_slice(&flags.to_be_bytes());
}

/// Appends a `0x04` hello with `flags` and this node's announce interval
/// (ms), which nodes that know the field read and others ignore.
pub fn encode_hello_interval(out: &mut Vec<u8>, flags: u32, interval_ms: u32) {
    header(out, kind::HELLO, 9);
    out.push(VERSION);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&interval_ms.to_be_bytes());
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
