//! Codec tests: 0.4's captured messages (../shared/vectors-invpn04.txt),
//! round trips, and every malformed class.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn mac(s: &str) -> Mac {
    s.parse().unwrap()
}

/// Parses a whole stream message (with prefix), checking the prefix.
fn parse_stream(bytes: &[u8]) -> Message<'_> {
    let (msg, rest) = split_message(bytes).expect("whole message");
    assert!(rest.is_empty());
    parse(msg).unwrap()
}

const V_DIRECT: &str = "00120001000001a21480a00d025056000002a310";
const V_ANNOUNCE_01: &str = "00170101000001a21480b10d025056000001a31001c6120101";
const V_ANNOUNCE_09: &str = "00170101000001a21480a00b025056000009a31001c6120209";
const V_UNICAST: &str = "0063800250560000090250560000010800450000543092400040017de6c6130001c6130009080058c237800001f54b076b00000000a732050000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637";
const V_BCAST_ARP: &str = "002d81000001a21480b65c02505600000108060001080006040001025056000001c6130001000000000000c6130009";
const V_BCAST_ICMP: &str = "006581000001a21480be36025056000001080045000054000040004001ad82c6130001c61300ff0800099b37810001f74b076b00000000f458050000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637";

#[test]
fn v04_direct_announce() {
    let b = hex(V_DIRECT);
    let want = DirectAnnounce {
        version: 1,
        id: 0x0000_01a2_1480_a00d,
        mac: mac("02:50:56:00:00:02"),
        port: 41744,
    };
    assert_eq!(parse_stream(&b), Message::DirectAnnounce(want));
    let mut out = Vec::new();
    encode_direct_announce(&mut out, &want);
    assert_eq!(out, b);
}

#[test]
fn v04_announces() {
    for (v, m, ip) in [
        (V_ANNOUNCE_01, "02:50:56:00:00:01", [198, 18, 1, 1]),
        (V_ANNOUNCE_09, "02:50:56:00:00:09", [198, 18, 2, 9]),
    ] {
        let b = hex(v);
        let Message::Announce(a) = parse_stream(&b) else { panic!("not an announce") };
        assert_eq!(a.version, 1);
        assert_eq!(a.mac, mac(m));
        assert_eq!(a.port, 41744);
        assert_eq!(a.addr, AnnouncedAddr::V4(ip.into()));
        assert_eq!(a.socket_addr().unwrap().to_string(), format!("{}:41744", Ipv4Addr::from(ip)));
        let mut out = Vec::new();
        encode_announce(&mut out, &a);
        assert_eq!(out, b);
    }
}

#[test]
fn v04_unicast_is_a_whole_frame() {
    let b = hex(V_UNICAST);
    let Message::Unicast(u) = parse_stream(&b) else { panic!("not unicast") };
    assert_eq!(u.dst, mac("02:50:56:00:00:09"));
    assert_eq!(u.src, mac("02:50:56:00:00:01"));
    assert_eq!(u.frame, &b[3..]);
    assert_eq!(&u.frame[12..14], &[0x08, 0x00]);
    let mut out = Vec::new();
    assert!(encode_unicast(&mut out, u.frame));
    assert_eq!(out, b);
}

#[test]
fn v04_broadcasts() {
    for (v, ethertype) in [(V_BCAST_ARP, [8, 6]), (V_BCAST_ICMP, [8, 0])] {
        let b = hex(v);
        let Message::Broadcast(m) = parse_stream(&b) else { panic!("not broadcast") };
        assert_eq!(m.src, mac("02:50:56:00:00:01"));
        assert_eq!(m.payload[..2], ethertype);
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&m.src.0);
        frame.extend_from_slice(m.payload);
        let mut out = Vec::new();
        assert!(encode_broadcast(&mut out, m.id, &frame));
        assert_eq!(out, b);
    }
}

#[test]
fn announce_v6_and_none_round_trip() {
    for addr in [AnnouncedAddr::None, AnnouncedAddr::V6("fd00::1".parse().unwrap())] {
        let a = Announce { version: 1, id: 7, mac: mac("02:00:00:00:00:01"), port: 1, addr };
        let mut out = Vec::new();
        encode_announce(&mut out, &a);
        assert_eq!(parse_stream(&out), Message::Announce(a));
    }
}

#[test]
fn mapped_v6_from_04_dials_as_v4() {
    // 0.4 (Qt 5) relays a neighbour that dialled it as type 2 ::ffff:a.b.c.d
    let b = hex("00230101000001a21480b10d025056000001a3100200000000000000000000ffffc6120101");
    let Message::Announce(a) = parse_stream(&b) else { panic!() };
    assert_eq!(a.socket_addr(), Some("198.18.1.1:41744".parse().unwrap()));
    let mut out = Vec::new();
    encode_announce(&mut out, &a);
    assert_eq!(out, b, "relayed unchanged");
}

#[test]
fn mapped_v4_is_announced_as_v4() {
    let ip: IpAddr = "::ffff:198.18.0.1".parse().unwrap();
    assert_eq!(AnnouncedAddr::from_ip(ip), AnnouncedAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
}

#[test]
fn health_round_trip() {
    let trace = [mac("02:00:00:00:00:02"), mac("02:00:00:00:00:03")];
    let tb: Vec<u8> = trace.iter().flat_map(|m| m.0).collect();
    let mut out = Vec::new();
    assert!(encode_health_request(&mut out, 1, 99, mac("02:00:00:00:00:01"), &tb));
    let Message::HealthRequest(r) = parse_stream(&out) else { panic!() };
    assert_eq!(r.id, 99);
    assert_eq!(r.trace.iter().collect::<Vec<_>>(), trace);

    let rep = HealthReport {
        dst: mac("02:00:00:00:00:01"),
        responder: mac("02:00:00:00:00:03"),
        request_id: 99,
        links: vec![mac("02:00:00:00:00:02")],
        routes: vec![(mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02"))],
        trace: trace.to_vec(),
        reverse: vec![mac("02:00:00:00:00:03"), mac("02:00:00:00:00:02")],
    };
    let mut out = Vec::new();
    encode_health_response(&mut out, 1, &rep);
    let Message::HealthResponse(p) = parse_stream(&out) else { panic!() };
    assert_eq!(HealthReport::from_wire(&p), rep);
}

#[test]
fn health_response_layout_is_exact() {
    // Literal bytes for a response with one link, no routes, no trace hops.
    let rep = HealthReport {
        dst: Mac([2, 0, 0, 0, 0, 1]),
        responder: Mac([2, 0, 0, 0, 0, 2]),
        request_id: 0x0102030405060708,
        links: vec![Mac([2, 0, 0, 0, 0, 1])],
        routes: vec![],
        trace: vec![],
        reverse: vec![Mac([2, 0, 0, 0, 0, 2])],
    };
    let mut out = Vec::new();
    encode_health_response(&mut out, 1, &rep);
    let want = hex(concat!(
        "0028",
        "03",
        "01",
        "020000000001",
        "020000000002",
        "0102030405060708",
        "0001",
        "020000000001",
        "0000",
        "0000",
        "020000000002"
    ));
    assert_eq!(out, want);
}

#[test]
fn oversized_health_response_is_cut_to_fit() {
    let m = Mac([2, 0, 0, 0, 0, 1]);
    let rep =
        HealthReport { links: vec![m; 20_000], routes: vec![(m, m); 20_000], ..Default::default() };
    let mut out = Vec::new();
    encode_health_response(&mut out, 1, &rep);
    assert!(out.len() <= LEN_PREFIX + MAX_MSG_LEN);
    assert!(matches!(parse_stream(&out), Message::HealthResponse(_)));
}

#[test]
fn in_place_encoding_matches_encoders() {
    let frame: Vec<u8> = (0..60u8).collect();
    let mut buf = vec![0u8; FRAME_HEADROOM + frame.len()];
    buf[FRAME_HEADROOM..].copy_from_slice(&frame);
    let r = unicast_in_place(&mut buf, FRAME_HEADROOM, frame.len()).unwrap();
    let mut want = Vec::new();
    encode_unicast(&mut want, &frame);
    assert_eq!(&buf[r], &want[..]);

    buf[FRAME_HEADROOM..].copy_from_slice(&frame);
    let r = broadcast_in_place(&mut buf, FRAME_HEADROOM, frame.len(), 42).unwrap();
    let mut want = Vec::new();
    encode_broadcast(&mut want, 42, &frame);
    assert_eq!(&buf[r], &want[..]);
    assert_eq!(unicast_in_place(&mut buf, FRAME_HEADROOM, 13), None);
}

#[test]
fn malformed_classes() {
    let cases: &[(&str, WireError)] = &[
        ("", WireError::Empty),
        ("00", WireError::Truncated { kind: 0, field: "version" }),
        ("0001000001a21480a00d0250560000", WireError::Truncated { kind: 0, field: "mac" }),
        ("0001000001a21480a00d025056000002a31000", WireError::Trailing { kind: 0, extra: 1 }),
        (
            "0101000001a21480a00d025056000002a310",
            WireError::Truncated { kind: 1, field: "address type" },
        ),
        ("0101000001a21480a00d025056000002a31009", WireError::BadAddressType(9)),
        (
            "0101000001a21480a00d025056000002a31001c612",
            WireError::Truncated { kind: 1, field: "address" },
        ),
        ("0101000001a21480a00d025056000002a31000ff", WireError::Trailing { kind: 1, extra: 1 }),
        (
            "0201000000000000000102000000000102",
            WireError::Misaligned { kind: 2, field: "traceroute" },
        ),
        (
            "030102000000000102000000000200000000000000010005",
            WireError::Truncated { kind: 3, field: "links" },
        ),
        ("800250560000090250560000", WireError::Truncated { kind: 0x80, field: "source" }),
        ("8002505600000902505600000108", WireError::RuntFrame { kind: 0x80 }),
        ("81000001a21480b65c02505600000108", WireError::RuntFrame { kind: 0x81 }),
        ("81000001a21480b6", WireError::Truncated { kind: 0x81, field: "id" }),
    ];
    for (h, want) in cases {
        assert_eq!(parse(&hex(h)), Err(*want), "case {h}");
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn unknown_types_are_not_errors() {
    assert_eq!(parse(&[0x42, 1, 2, 3]), Ok(Message::Unknown(0x42)));
    assert_eq!(parse(&[0xff]), Ok(Message::Unknown(0xff)));
}

#[test]
fn split_message_needs_whole_message() {
    let b = hex(V_DIRECT);
    for cut in 0..b.len() {
        assert!(split_message(&b[..cut]).is_none(), "cut at {cut}");
    }
    let mut two = b.clone();
    two.extend_from_slice(&b);
    let (first, rest) = split_message(&two).unwrap();
    assert_eq!(first, &b[2..]);
    assert_eq!(rest, &b[..]);
    assert_eq!(split_message(&[0, 0]), Some((&[][..], &[][..])));
}

#[test]
fn hello_and_offloaded_round_trip() {
    let mut out = Vec::new();
    encode_hello(&mut out, hello_flags::OFFLOADED);
    assert_eq!(out, hex("0006040100000001").as_slice().to_vec());
    assert_eq!(
        parse_stream(&out),
        Message::Hello(Hello { version: 1, flags: 1, interval_ms: None })
    );
    // a later hello with more fields still parses
    let short = Hello { version: 1, flags: 1, interval_ms: None };
    assert_eq!(parse(&hex("040100000001ffff")), Ok(Message::Hello(short)));
    // the interval, appended; what may follow it is ignored
    let long = Hello { version: 1, flags: 1, interval_ms: Some(5000) };
    assert_eq!(parse(&hex("04010000000100001388")), Ok(Message::Hello(long)));
    assert_eq!(parse(&hex("04010000000100001388ffff")), Ok(Message::Hello(long)));
    let mut out = Vec::new();
    encode_hello_interval(&mut out, 1, 5000);
    assert_eq!(parse_stream(&out), Message::Hello(Hello { version: VERSION, ..long }));
    assert!(matches!(parse(&hex("040100")), Err(WireError::Truncated { .. })));

    use crate::core::offload::VnetHdr;
    let frame: Vec<u8> = (0..60u8).collect();
    let plain = VnetHdr::default();
    let mut out = Vec::new();
    assert!(encode_offloaded(&mut out, &plain, &frame));
    let Message::Offloaded(o) = parse_stream(&out) else { panic!() };
    assert_eq!((o.hdr, o.frame, o.dst.0.to_vec()), (plain, &frame[..], frame[..6].to_vec()));
    // in place, from a TAP read with its header
    let mut buf = vec![0u8; VNET_FRAME_AT + frame.len()];
    buf[VNET_FRAME_AT..].copy_from_slice(&frame);
    let r = offloaded_in_place(&mut buf, &plain, frame.len()).unwrap();
    assert_eq!(&buf[r], &out[..]);
    // a header pointing outside the frame is malformed
    let bad = VnetHdr { flags: 1, csum_start: 50, csum_offset: 16, ..Default::default() };
    let mut out = Vec::new();
    encode_offloaded(&mut out, &bad, &frame);
    assert!(matches!(parse(&out[2..]), Err(WireError::BadOffload(_))));
}

#[test]
fn whole_messages_name_their_type_and_parse() {
    let mut m = Vec::new();
    encode_hello(&mut m, 3);
    assert_eq!(kind_of(&m), Some(kind::HELLO));
    assert!(is_control(kind::HELLO) && !is_control(kind::UNICAST));
    let h = Hello { version: VERSION, flags: 3, interval_ms: None };
    assert_eq!(parse_whole(&m), Ok(Message::Hello(h)));
    assert_eq!(kind_of(&m[..LEN_PREFIX]), None);
    assert!(parse_whole(&m[..1]).is_err());
}

#[test]
fn a_twin_carries_a_unicast_and_unwraps_in_place_into_it() {
    let frame = hex("0a00000000020a000000000108004500");
    let mut plain = Vec::new();
    assert!(encode_unicast(&mut plain, &frame));
    let mut twin = Vec::new();
    assert!(encode_twin(&mut twin, 0xdead_beef, &plain));
    // len | 0x83 | seq | frame
    assert_eq!(twin.len(), plain.len() + 4);
    assert_eq!(&twin[..7], &[0, (frame.len() + 5) as u8, kind::TWIN, 0xde, 0xad, 0xbe, 0xef]);
    match parse_whole(&twin).unwrap() {
        Message::Twin(t) => {
            assert_eq!(t.seq, 0xdead_beef);
            assert_eq!(t.unicast.dst, mac("0a:00:00:00:00:02"));
            assert_eq!(t.unicast.src, mac("0a:00:00:00:00:01"));
            assert_eq!(t.unicast.frame, &frame[..]);
        }
        m => panic!("{m:?}"),
    }
    assert_eq!(carries(&twin), Carries::Frame { ethertype_at: 2 + 1 + 4 + 12 });
    assert_eq!(twin_seq(&twin), Some(0xdead_beef));
    assert_eq!(twin_seq(&plain), None);
    let (seq, inner) = untwin(&mut twin).unwrap();
    assert_eq!(seq, 0xdead_beef);
    assert_eq!(inner, &plain[..]);
    // only a 0x80 becomes a twin, and only a twin unwraps
    let mut out = Vec::new();
    assert!(!encode_twin(&mut out, 1, &twin[4..7]));
    assert!(out.is_empty());
    let mut hello = Vec::new();
    encode_hello(&mut hello, hello_flags::TWINS);
    assert!(!encode_twin(&mut out, 1, &hello));
    assert!(untwin(&mut plain).is_none());
    // a twin too short for its frame header is malformed, not a panic
    let mut runt = vec![0, 9, kind::TWIN, 0, 0, 0, 1, 1, 2, 3, 4];
    assert!(parse_whole(&runt).is_err());
    assert!(untwin(&mut runt).is_none());
}

#[test]
fn prunes_and_grafts_round_trip_and_split() {
    let (a, b, c) = (mac("02:50:56:00:00:0a"), mac("02:50:56:00:00:0b"), mac("02:50:56:00:00:0c"));
    let mut msgs = Vec::new();
    encode_prunes(&mut msgs, &[a, b], &[c]);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0], hex("00160501000202505600000a02505600000b02505600000c"));
    let Message::Prune(p) = parse_stream(&msgs[0]) else { panic!("not a prune") };
    assert_eq!(p.version, VERSION);
    assert_eq!(p.prune.iter().collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(p.graft.iter().collect::<Vec<_>>(), vec![c]);
    // nothing to say: no message
    msgs.clear();
    encode_prunes(&mut msgs, &[], &[]);
    assert!(msgs.is_empty());
    // a long list takes as many messages as it needs, each whole
    let many: Vec<Mac> =
        (0..20_000u32).map(|i| Mac([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8])).collect();
    encode_prunes(&mut msgs, &many[..15_000], &many[15_000..]);
    assert_eq!(msgs.len(), 20_000usize.div_ceil(MAX_PRUNE_ENTRIES));
    let (mut pruned, mut grafted) = (Vec::new(), Vec::new());
    for m in &msgs {
        assert!(m.len() <= LEN_PREFIX + MAX_MSG_LEN);
        let Message::Prune(p) = parse_stream(m) else { panic!("not a prune") };
        pruned.extend(p.prune.iter());
        grafted.extend(p.graft.iter());
    }
    assert_eq!((pruned.as_slice(), grafted.as_slice()), (&many[..15_000], &many[15_000..]));
}

#[test]
fn malformed_prunes_are_errors() {
    // the count says two, one is there
    assert_eq!(
        parse(&hex("05010002025056000001")),
        Err(WireError::Truncated { kind: kind::PRUNE, field: "pruned sources" })
    );
    assert_eq!(
        parse(&hex("0501")),
        Err(WireError::Truncated { kind: kind::PRUNE, field: "prune count" })
    );
    // grafts that are not whole MACs
    assert_eq!(
        parse(&hex("050100000250")),
        Err(WireError::Misaligned { kind: kind::PRUNE, field: "grafted sources" })
    );
}

#[test]
fn route_tables_and_requests_round_trip() {
    let a = Announce {
        version: VERSION,
        id: 7,
        mac: mac("02:50:56:00:00:09"),
        port: 41744,
        addr: AnnouncedAddr::V4("198.18.0.9".parse().unwrap()),
    };
    let b =
        Announce { id: 8, mac: mac("02:50:56:00:00:0a"), port: 0, addr: AnnouncedAddr::None, ..a };
    let c = Announce { id: 9, addr: AnnouncedAddr::V6("fd00::9".parse().unwrap()), ..a };
    let mut msgs = Vec::new();
    encode_routes(&mut msgs, [a, b, c]);
    assert_eq!(msgs.len(), 1);
    let Message::Routes(r) = parse_stream(&msgs[0]) else { panic!("not a route table") };
    assert_eq!(r.iter().collect::<Vec<_>>(), vec![a, b, c]);
    // a table too long for one message takes several, each whole
    msgs.clear();
    encode_routes(&mut msgs, std::iter::repeat_n(c, 5000));
    assert_eq!(msgs.len(), 3);
    let n: usize = msgs
        .iter()
        .map(|m| match parse_stream(m) {
            Message::Routes(r) => r.iter().count(),
            _ => panic!("not a route table"),
        })
        .sum();
    assert_eq!(n, 5000);
    // an entry with an unknown address type makes the message malformed
    let mut bad = msgs[0][..LEN_PREFIX + 2 + 17].to_vec();
    bad[LEN_PREFIX + 2 + 16] = 9;
    let len = (bad.len() - 2) as u16;
    bad[..2].copy_from_slice(&len.to_be_bytes());
    assert_eq!(parse(&bad[2..]), Err(WireError::BadAddressType(9)));
    // a request: the neighbour lost, then the nodes
    let lost = mac("02:50:56:00:00:02");
    msgs.clear();
    encode_route_requests(&mut msgs, lost, &[a.mac, b.mac]);
    let Message::RouteRequest(q) = parse_stream(&msgs[0]) else { panic!("not a request") };
    assert_eq!((q.lost, q.nodes.iter().collect::<Vec<_>>()), (lost, vec![a.mac, b.mac]));
    assert_eq!(
        parse(&hex("0701025056")),
        Err(WireError::Truncated { kind: kind::ROUTE_REQUEST, field: "lost neighbour" })
    );
}

#[test]
fn announce_requests_round_trip_and_split() {
    let macs: Vec<Mac> =
        (0..MAX_ASKED + 3).map(|i| Mac([2, 0, 0, 0, (i >> 8) as u8, i as u8])).collect();
    let mut msgs = Vec::new();
    encode_announce_requests(&mut msgs, 16, &macs);
    assert_eq!(msgs.len(), 2);
    let Message::AnnounceRequest(q) = parse_stream(&msgs[1]) else { panic!("not a request") };
    assert_eq!((q.hops, q.nodes.iter().collect::<Vec<_>>()), (16, macs[MAX_ASKED..].to_vec()));
    assert_eq!(
        parse(&[kind::ANNOUNCE_REQUEST, VERSION]),
        Err(WireError::Truncated { kind: kind::ANNOUNCE_REQUEST, field: "hops" })
    );
    // nodes that are not whole MACs; none at all is a harmless request
    assert_eq!(
        parse(&[kind::ANNOUNCE_REQUEST, VERSION, 16, 2, 0x50, 0x56]),
        Err(WireError::Misaligned { kind: kind::ANNOUNCE_REQUEST, field: "nodes" })
    );
    let Ok(Message::AnnounceRequest(q)) = parse(&[kind::ANNOUNCE_REQUEST, VERSION, 16]) else {
        panic!("an empty request")
    };
    assert_eq!(q.nodes.iter().count(), 0);
}
