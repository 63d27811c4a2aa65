//! TAP offloads: the virtio-net header that comes with each frame when the
//! TAP has `IFF_VNET_HDR`, checks of offloaded frames, checksum completion
//! and TCP segmentation in software.
//!
//! With TSO enabled on the TAP, the kernel hands invpnd TCP "super-frames"
//! of up to 64 KiB that it would otherwise have cut into MTU-sized frames.
//! Between invpnd nodes that both take them (they say so in their hello),
//! such a frame crosses the mesh whole, as a `0x82` message, and the
//! receiving kernel takes it whole too: one message instead of forty. For
//! anyone else (0.4 nodes, nodes without offload) the frame is cut here into
//! ordinary frames with correct checksums, exactly as the kernel would have.

use std::fmt;

/// Size of the virtio-net header the TAP prepends (without MRG_RXBUF).
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the checksum at `csum_start + csum_offset` is partial.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum is known to be valid.
pub const F_DATA_VALID: u8 = 2;
/// `gso_type`: not a super-frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP over IPv4 super-frame.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: a TCP over IPv6 super-frame.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` flag: TCP ECN (CWR) in use.
pub const GSO_ECN: u8 = 0x80;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_VLAN: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;

/// A virtio-net header, host independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// [`F_NEEDS_CSUM`], [`F_DATA_VALID`].
    pub flags: u8,
    /// [`GSO_NONE`], [`GSO_TCPV4`] or [`GSO_TCPV6`], maybe with [`GSO_ECN`].
    pub gso_type: u8,
    /// Bytes of headers (Ethernet, IP, TCP) before the payload.
    pub hdr_len: u16,
    /// Payload bytes per segment of a super-frame.
    pub gso_size: u16,
    /// Where checksumming starts (from the Ethernet header).
    pub csum_start: u16,
    /// Where in that the checksum goes.
    pub csum_offset: u16,
}

/// Why an offloaded frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffloadError(pub &'static str);

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad offloaded frame: {}", self.0)
    }
}

impl std::error::Error for OffloadError {}

impl VnetHdr {
    /// Reads the header the TAP wrote (little endian, as virtio on x86 and
    /// every other little-endian host).
    pub fn from_tap(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        }
    }

    /// The header as the TAP takes it.
    pub fn to_tap(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// Reads the header from a `0x82` message (big endian).
    pub fn from_wire(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let be = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: be(2),
            gso_size: be(4),
            csum_start: be(6),
            csum_offset: be(8),
        }
    }

    /// The header for a `0x82` message.
    pub fn to_wire(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_be_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_be_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_be_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_be_bytes());
        b
    }

    /// Whether the frame is a TCP super-frame to be segmented.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }
}

/// Where the headers of a TCP frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    l3: usize,
    l4: usize,
    payload: usize,
    v4: bool,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The L3 offset and EtherType of a frame (one 802.1Q tag allowed).
fn l3_of(frame: &[u8]) -> Option<(usize, u16)> {
    match be16(frame, 12)? {
        ETH_P_VLAN => Some((18, be16(frame, 16)?)),
        t => Some((14, t)),
    }
}

/// Checks an offloaded frame's header against the frame, so that nothing a
/// peer sends makes the kernel or the segmentation below read outside it.
pub fn check(h: &VnetHdr, frame: &[u8]) -> Result<(), OffloadError> {
    checked_layout(h, frame).map(|_| ())
}

/// [`check`], returning the TCP layout of a segmentation offload.
fn checked_layout(h: &VnetHdr, frame: &[u8]) -> Result<Option<Layout>, OffloadError> {
    if frame.len() < 14 {
        return Err(OffloadError("shorter than an Ethernet header"));
    }
    if h.flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
        return Err(OffloadError("unknown flags"));
    }
    let csum_end = h.csum_start as usize + h.csum_offset as usize + 2;
    if h.flags & F_NEEDS_CSUM != 0 && (csum_end > frame.len() || (h.csum_start as usize) < 14) {
        return Err(OffloadError("checksum position outside the frame"));
    }
    match h.gso_type & !GSO_ECN {
        GSO_NONE => Ok(None),
        GSO_TCPV4 | GSO_TCPV6 => tcp_layout(h, frame).map(Some),
        _ => Err(OffloadError("segmentation type other than TCP")),
    }
}

/// The smallest segment size accepted: Linux never sends an MSS below 48
/// (`tcp_min_snd_mss`), and a smaller one only multiplies the work of
/// segmenting a super-frame.
pub const MIN_GSO_SIZE: u16 = 48;

fn tcp_layout(h: &VnetHdr, frame: &[u8]) -> Result<Layout, OffloadError> {
    let (l3, ethertype) = l3_of(frame).ok_or(OffloadError("truncated Ethernet header"))?;
    let v4 = h.gso_type & !GSO_ECN == GSO_TCPV4;
    let l4 = match (v4, ethertype) {
        (true, ETH_P_IPV4) => {
            let vihl = *frame.get(l3).ok_or(OffloadError("truncated IPv4 header"))?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 || frame.get(l3 + 9) != Some(&IPPROTO_TCP) {
                return Err(OffloadError("not IPv4 TCP"));
            }
            l3 + ihl
        }
        (false, ETH_P_IPV6) => {
            if frame.get(l3).map(|v| v >> 4) != Some(6) || frame.get(l3 + 6) != Some(&IPPROTO_TCP) {
                return Err(OffloadError("not IPv6 TCP (extension headers are not segmented)"));
            }
            l3 + 40
        }
        _ => return Err(OffloadError("segmentation type does not match the EtherType")),
    };
    if h.flags & F_NEEDS_CSUM == 0 || h.csum_start as usize != l4 || h.csum_offset != 16 {
        return Err(OffloadError("TCP checksum position does not match the headers"));
    }
    let doff =
        usize::from(*frame.get(l4 + 12).ok_or(OffloadError("truncated TCP header"))? >> 4) * 4;
    let payload = l4 + doff;
    if doff < 20 || payload > frame.len() {
        return Err(OffloadError("truncated TCP header"));
    }
    if h.gso_size < MIN_GSO_SIZE {
        return Err(OffloadError("segment size below the smallest TCP MSS"));
    }
    Ok(Layout { l3, l4, payload, v4 })
}

/// Ones'-complement sum of `data` added to `sum` (not folded).
pub fn csum_add(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = sum.overflowing_add(v);
        sum = s + u64::from(carry);
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        sum += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        sum += u64::from(rest[i]) << 8;
    }
    sum
}

/// Folds a sum to 16 bits.
pub fn csum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Completes a partial checksum in place (`F_NEEDS_CSUM`, no segmentation):
/// the field already holds the pseudo-header sum; the sum of everything
/// from `csum_start` on, complemented, is the checksum.
pub fn complete_checksum(h: &VnetHdr, frame: &mut [u8]) -> Result<(), OffloadError> {
    if h.flags & F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let start = h.csum_start as usize;
    let at = start + h.csum_offset as usize;
    if at + 2 > frame.len() || start > frame.len() {
        return Err(OffloadError("checksum position outside the frame"));
    }
    let c = !csum_fold(csum_add(0, &frame[start..]));
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The TCP checksum of `seg` (whose checksum field is zero) with its
/// pseudo-header.
fn tcp_checksum(seg: &[u8], l: &Layout) -> u16 {
    let tcp_len = seg.len() - l.l4;
    let mut sum = if l.v4 {
        csum_add(0, &seg[l.l3 + 12..l.l3 + 20])
    } else {
        csum_add(0, &seg[l.l3 + 8..l.l3 + 40])
    };
    sum += tcp_len as u64 + u64::from(IPPROTO_TCP);
    sum = csum_add(sum, &seg[l.l4..]);
    !csum_fold(sum)
}

/// What an offloaded frame stands for, as ordinary frames, each handed to
/// `emit`: a super-frame cut into segments, or a frame whose partial
/// checksum is completed (on a copy). The one way to turn a `0x82` frame
/// into plain frames for a peer or a TAP that takes no offloads. Returns how
/// many frames were cut in software (0 for a checksum completion).
pub fn plain_frames(
    h: &VnetHdr,
    frame: &[u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    if h.is_gso() {
        return segment(h, frame, emit);
    }
    let mut f = frame.to_vec();
    complete_checksum(h, &mut f)?;
    emit(&f);
    Ok(0)
}

/// Cuts a TCP super-frame into frames of at most `gso_size` bytes of
/// payload each, with their own lengths, IPv4 ids, sequence numbers, flags
/// and checksums, as the kernel's TSO would; calls `emit` with each.
pub fn segment(
    h: &VnetHdr,
    frame: &[u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    // everything `check` refuses is refused here too, so that a frame is
    // never segmented on one path and dropped on another
    let l = match checked_layout(h, frame)? {
        Some(l) => l,
        None => tcp_layout(h, frame)?,
    };
    let mss = usize::from(h.gso_size);
    let headers = &frame[..l.payload];
    let payload = &frame[l.payload..];
    let seq0 =
        u32::from_be_bytes([frame[l.l4 + 4], frame[l.l4 + 5], frame[l.l4 + 6], frame[l.l4 + 7]]);
    let id0 = if l.v4 { be16(frame, l.l3 + 4).unwrap_or(0) } else { 0 };
    let flags0 = frame[l.l4 + 13];
    let n = payload.len().div_ceil(mss).max(1);
    let mut seg = Vec::with_capacity(l.payload + mss);
    for i in 0..n {
        let chunk = payload.get(i * mss..((i + 1) * mss).min(payload.len())).unwrap_or(&[]);
        seg.clear();
        seg.extend_from_slice(headers);
        seg.extend_from_slice(chunk);
        if l.v4 {
            let total = (seg.len() - l.l3) as u16;
            seg[l.l3 + 2..l.l3 + 4].copy_from_slice(&total.to_be_bytes());
            seg[l.l3 + 4..l.l3 + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            seg[l.l3 + 10..l.l3 + 12].copy_from_slice(&[0, 0]);
            let c = !csum_fold(csum_add(0, &seg[l.l3..l.l4]));
            seg[l.l3 + 10..l.l3 + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let plen = (seg.len() - l.l3 - 40) as u16;
            seg[l.l3 + 4..l.l3 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        let seq = seq0.wrapping_add((i * mss) as u32);
        seg[l.l4 + 4..l.l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < n {
            flags &= !(0x01 | 0x08); // FIN and PSH only on the last segment
        }
        if i > 0 {
            flags &= !0x80; // CWR only on the first
        }
        seg[l.l4 + 13] = flags;
        seg[l.l4 + 16..l.l4 + 18].copy_from_slice(&[0, 0]);
        let c = tcp_checksum(&seg, &l);
        seg[l.l4 + 16..l.l4 + 18].copy_from_slice(&c.to_be_bytes());
        emit(&seg);
    }
    Ok(n)
}

#[cfg(test)]
#[path = "offload_tests.rs"]
mod tests;
