//! Offload tests: frames built by hand, segmented, and every checksum
//! verified with an independent, byte-by-byte ones'-complement sum.

use super::*;

/// Reference checksum: plain 16-bit ones'-complement sum, folded.
fn ref_sum(parts: &[&[u8]]) -> u16 {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    if all.len() % 2 == 1 {
        all.push(0);
    }
    let mut s: u32 = 0;
    for w in all.chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

const SRC4: [u8; 4] = [198, 19, 0, 1];
const DST4: [u8; 4] = [198, 19, 0, 2];

fn eth(ethertype: u16, vlan: bool) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn tcp_header(seq: u32, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&77u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64000u16.to_be_bytes());
    t
}

/// An IPv4 TCP super-frame: returns (frame, header).
fn v4_frame(payload: &[u8], mss: u16, flags: u8, vlan: bool) -> (Vec<u8>, VnetHdr) {
    let mut f = eth(0x0800, vlan);
    let l3 = f.len();
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&SRC4);
    ip.extend_from_slice(&DST4);
    let total = (20 + 20 + payload.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp_header(1000, flags));
    f.extend_from_slice(payload);
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: (l3 + 40) as u16,
        gso_size: mss,
        csum_start: (l3 + 20) as u16,
        csum_offset: 16,
    };
    (f, h)
}

fn v6_frame(payload: &[u8], mss: u16) -> (Vec<u8>, VnetHdr) {
    let mut f = eth(0x86dd, false);
    let mut ip = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
    ip[4..6].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    let src: [u8; 16] = "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let dst: [u8; 16] = "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp_header(5000, 0x18));
    f.extend_from_slice(payload);
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV6,
        hdr_len: 74,
        gso_size: mss,
        csum_start: 54,
        csum_offset: 16,
    };
    (f, h)
}

fn pseudo_v4(seg: &[u8], l3: usize) -> Vec<u8> {
    let tcp_len = (seg.len() - l3 - 20) as u16;
    let mut p = seg[l3 + 12..l3 + 20].to_vec();
    p.extend_from_slice(&[0, 6]);
    p.extend_from_slice(&tcp_len.to_be_bytes());
    p
}

fn pseudo_v6(seg: &[u8]) -> Vec<u8> {
    let tcp_len = (seg.len() - 54) as u32;
    let mut p = seg[14 + 8..14 + 40].to_vec();
    p.extend_from_slice(&tcp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 6]);
    p
}

#[test]
fn ipv4_super_frame_segments_like_tso() {
    for vlan in [false, true] {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let (f, h) = v4_frame(&payload, 1448, 0x19, vlan); // FIN|PSH|ACK
        check(&h, &f).unwrap();
        let l3 = if vlan { 18 } else { 14 };
        let mut segs = Vec::new();
        let n = segment(&h, &f, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 7);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(s.len() - l3 - 40 <= 1448);
            let ip = &s[l3..l3 + 20];
            assert_eq!(ref_sum(&[ip]), 0xffff, "IPv4 header checksum of segment {i}");
            assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, s.len() - l3);
            assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 0x1234 + i as u16);
            let tcp = &s[l3 + 20..];
            assert_eq!(ref_sum(&[&pseudo_v4(s, l3), tcp]), 0xffff, "TCP checksum of segment {i}");
            assert_eq!(
                u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
                1000 + (i * 1448) as u32
            );
            let last = i + 1 == segs.len();
            assert_eq!(tcp[13], if last { 0x19 } else { 0x10 }, "FIN/PSH only on the last");
            joined.extend_from_slice(&tcp[20..]);
        }
        assert_eq!(joined, payload);
    }
}

#[test]
fn ipv6_super_frame_segments_like_tso() {
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let (f, h) = v6_frame(&payload, 1000);
    let mut segs = Vec::new();
    assert_eq!(segment(&h, &f, |s| segs.push(s.to_vec())).unwrap(), 3);
    for s in &segs {
        assert_eq!(u16::from_be_bytes([s[18], s[19]]) as usize, s.len() - 54);
        assert_eq!(ref_sum(&[&pseudo_v6(s), &s[54..]]), 0xffff);
    }
    assert_eq!(segs[2].len(), 74 + 1000);
}

#[test]
fn cwr_only_on_the_first_segment_and_empty_payload_is_one_frame() {
    let (f, mut h) = v4_frame(&[1u8; 300], 100, 0x90, false); // CWR|ACK
    h.gso_type |= GSO_ECN;
    let mut flags = Vec::new();
    segment(&h, &f, |s| flags.push(s[14 + 20 + 13])).unwrap();
    assert_eq!(flags, vec![0x90, 0x10, 0x10]);
    let (f, h) = v4_frame(&[], 100, 0x10, false);
    assert_eq!(segment(&h, &f, |_| {}).unwrap(), 1);
}

#[test]
fn partial_checksum_is_completed() {
    // what the kernel hands over: the pseudo-header sum in the field
    let (mut f, _) = v4_frame(&[9u8; 333], 1448, 0x18, false);
    let pseudo = pseudo_v4(&f, 14);
    let partial = !ref_sum(&[&pseudo]) ^ 0xffff; // folded pseudo sum, not complemented
    f[34 + 16..34 + 18].copy_from_slice(&partial.to_be_bytes());
    let h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..Default::default() };
    check(&h, &f).unwrap();
    complete_checksum(&h, &mut f).unwrap();
    assert_eq!(ref_sum(&[&pseudo, &f[34..]]), 0xffff);
    // nothing to do without the flag
    let before = f.clone();
    complete_checksum(&VnetHdr::default(), &mut f).unwrap();
    assert_eq!(f, before);
}

#[test]
fn headers_round_trip_in_both_byte_orders() {
    let h = VnetHdr {
        flags: 1,
        gso_type: 4,
        hdr_len: 74,
        gso_size: 1428,
        csum_start: 54,
        csum_offset: 16,
    };
    assert_eq!(VnetHdr::from_tap(&h.to_tap()), h);
    assert_eq!(VnetHdr::from_wire(&h.to_wire()), h);
    assert_eq!(h.to_tap()[4..6], 1428u16.to_le_bytes());
    assert_eq!(h.to_wire()[4..6], 1428u16.to_be_bytes());
    assert!(h.is_gso() && !VnetHdr::default().is_gso());
}

#[test]
fn bad_headers_are_refused() {
    let (f, h) = v4_frame(&[0u8; 2000], 1000, 0x10, false);
    let (f6, h6) = v6_frame(&[0u8; 100], 50);
    let cases: Vec<(VnetHdr, &[u8], &str)> = vec![
        (VnetHdr { flags: 0x40, ..h }, &f, "flags"),
        (VnetHdr { csum_start: 60000, ..h }, &f, "outside"),
        (VnetHdr { gso_type: 3, ..h }, &f, "other than TCP"),
        (VnetHdr { gso_type: GSO_TCPV6, ..h }, &f, "EtherType"),
        (h6, &f, "EtherType"),
        (VnetHdr { gso_size: 0, ..h }, &f, "smallest TCP MSS"),
        (VnetHdr { gso_size: MIN_GSO_SIZE - 1, ..h }, &f, "smallest TCP MSS"),
        // found by fuzzing: unknown flags beside NEEDS_CSUM were segmented
        (VnetHdr { flags: 0xff, ..h }, &f, "unknown flags"),
        (VnetHdr { csum_start: 30, ..h }, &f, "checksum position"),
        (VnetHdr { flags: 0, ..h }, &f, "checksum position"),
        (h, &f[..53], "truncated"),
        (h, &f[..10], "shorter"),
    ];
    for (hdr, frame, want) in cases {
        let e = check(&hdr, frame).unwrap_err();
        assert!(e.0.contains(want), "{hdr:?}: {e} lacks {want}");
        let mut emitted = 0;
        assert!(segment(&hdr, frame, |_| emitted += 1).is_err(), "{hdr:?} segmented");
        assert_eq!(emitted, 0);
    }
    // IPv6 extension headers are not segmented
    let mut ext = f6.clone();
    ext[14 + 6] = 0; // hop-by-hop
    assert!(check(&h6, &ext).is_err());
    check(&h6, &f6).unwrap();
}

#[test]
fn csum_add_matches_the_reference_on_odd_lengths() {
    let mut rng = fastrand::Rng::with_seed(3);
    for len in 0..300 {
        let d: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        assert_eq!(csum_fold(csum_add(0, &d)), ref_sum(&[&d]), "len {len}");
    }
}

#[test]
fn plain_frames_segments_a_super_frame_and_completes_a_checksum() {
    let (f, h) = v4_frame(&[7u8; 3000], 1000, 0x18, false);
    let mut cut = Vec::new();
    assert_eq!(plain_frames(&h, &f, |s| cut.push(s.to_vec())), Ok(3));
    let mut segmented = Vec::new();
    segment(&h, &f, |s| segmented.push(s.to_vec())).unwrap();
    assert_eq!(cut, segmented, "the same as segment()");

    let (mut f, _) = v4_frame(&[9u8; 333], 1448, 0x18, false);
    let pseudo = pseudo_v4(&f, 14);
    let partial = !ref_sum(&[&pseudo]) ^ 0xffff;
    f[34 + 16..34 + 18].copy_from_slice(&partial.to_be_bytes());
    let h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..Default::default() };
    let mut out = Vec::new();
    assert_eq!(plain_frames(&h, &f, |s| out.push(s.to_vec())), Ok(0), "none cut");
    assert_eq!(out.len(), 1);
    assert_eq!(ref_sum(&[&pseudo, &out[0][34..]]), 0xffff, "checksum completed");
    // a frame that does not hold what its header says is dropped, not sent
    let bad = VnetHdr { csum_start: 5000, ..h };
    assert!(plain_frames(&bad, &f, |_| panic!("emitted")).is_err());
}
