//! The queue discipline on a virtual clock (µs).

use super::*;
use crate::core::offload::{csum_add, csum_fold};
use crate::core::wire;

/// An IPv4 frame of `len` bytes from port `sport`, with ECN bits `ecn`,
/// as a whole `0x80` message.
fn v4(sport: u16, ecn: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(14 + 28)];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[1] = ecn;
    let tot = (len.max(42) - 14) as u16;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
    let c = !csum_fold(csum_add(0, &ip[..20]));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&5201u16.to_be_bytes());
    let mut m = Vec::new();
    assert!(wire::encode_unicast(&mut m, &f));
    m
}

/// The same for IPv6.
fn v6(sport: u16, ecn: u8) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 48];
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut f[14..];
    ip[0] = 0x60;
    ip[1] = ecn << 4;
    ip[6] = 17;
    ip[8] = 0xfd;
    ip[24] = 0xfd;
    ip[40..42].copy_from_slice(&sport.to_be_bytes());
    let mut m = Vec::new();
    assert!(wire::encode_unicast(&mut m, &f));
    m
}

fn announce() -> Vec<u8> {
    let mut m = Vec::new();
    wire::encode_direct_announce(
        &mut m,
        &wire::DirectAnnounce {
            version: 1,
            id: 7,
            mac: crate::core::Mac([2, 0, 0, 0, 0, 1]),
            port: 1,
        },
    );
    m
}

fn ecn_of(msg: &[u8]) -> u8 {
    let Carries::Frame { ethertype_at } = wire::carries(msg) else { panic!("not a frame") };
    let ip = &msg[ethertype_at + 2..];
    if ip[0] >> 4 == 4 {
        ip[1] & 3
    } else {
        (ip[1] >> 4) & 3
    }
}

fn sport_of(msg: &[u8]) -> u16 {
    let Carries::Frame { ethertype_at } = wire::carries(msg) else { panic!("not a frame") };
    let ip = &msg[ethertype_at + 2..];
    let at = if ip[0] >> 4 == 4 { 20 } else { 40 };
    u16::from_be_bytes([ip[at], ip[at + 1]])
}

fn q(ecn: bool) -> FqCodel {
    FqCodel::new(FqConfig { ecn, ..FqConfig::default() }, 1)
}

/// Runs a bulk flow through a link that sends one frame per `gap` µs while
/// `per_gap` frames arrive in the same time; returns the sojourn of every
/// frame sent, with the time it was sent.
fn overload(fq: &mut FqCodel, ecn: u8, gap: u64, per_gap: usize, until: u64) -> Vec<(u64, u64)> {
    let mut sent = Vec::new();
    let mut arrivals = std::collections::HashMap::new();
    let mut seq = 0u32;
    let mut now = 0;
    while now < until {
        for _ in 0..per_gap {
            let mut m = v4(1000, ecn, 1000);
            // a sequence number in the payload, to find the arrival time
            let n = m.len();
            m[n - 4..].copy_from_slice(&seq.to_be_bytes());
            arrivals.insert(seq, now);
            seq += 1;
            fq.push(m, now);
        }
        if let Some(m) = fq.pop(now) {
            let n = m.len();
            let s = u32::from_be_bytes(m[n - 4..].try_into().unwrap());
            sent.push((now, now - arrivals[&s]));
        }
        now += gap;
    }
    sent
}

#[test]
fn no_drops_while_sojourn_stays_below_target() {
    let mut fq = q(false);
    // one frame a millisecond in, one out: never a queue
    let sent = overload(&mut fq, 0, 1_000, 1, 2_000_000);
    assert_eq!(sent.len(), 2_000);
    assert_eq!(fq.stats().codel_drops, 0);
    assert!(sent.iter().all(|&(_, s)| s == 0));
}

#[test]
fn responsive_flows_back_off_before_a_standing_queue_forms() {
    // A sender in the manner of TCP (additive increase, halved at most once
    // a round trip of 50 ms when it loses) into a link that sends one frame
    // a millisecond. Without CoDel it fills any queue; with it, the queue
    // stays near target.
    for ecn in [0u8, 2] {
        let mut fq = FqCodel::new(FqConfig { limit: 1 << 30, ..FqConfig::default() }, 1);
        let (mut rate, mut credit, mut last_cut, mut seen) = (0.5f64, 0.0f64, 0u64, 0u64);
        let mut sojourns = Vec::new();
        let mut arrivals = std::collections::VecDeque::new();
        for ms in 0..20_000u64 {
            let now = ms * 1000;
            credit += rate;
            while credit >= 1.0 {
                fq.push(v4(1000, ecn, 1000), now);
                arrivals.push_back(now);
                credit -= 1.0;
            }
            let before = fq.stats();
            if fq.pop(now).is_some() {
                let st = fq.stats();
                // frames dropped on the way out were the oldest ones
                for _ in 0..(st.codel_drops - before.codel_drops) {
                    arrivals.pop_front();
                }
                let at = arrivals.pop_front().unwrap();
                sojourns.push((now, now - at));
                let signals = st.codel_drops + st.ecn_marks;
                if signals > seen && now - last_cut > 50_000 {
                    rate *= 0.5;
                    last_cut = now;
                }
                seen = signals;
            }
            rate += 0.001;
        }
        let st = fq.stats();
        assert!(st.codel_drops + st.ecn_marks > 10, "{st:?}");
        if ecn != 0 {
            assert_eq!(st.codel_drops, 0, "ECN-capable: marked, not dropped");
        }
        let mut late: Vec<u64> =
            sojourns.iter().filter(|&&(t, _)| t > 5_000_000).map(|&(_, s)| s).collect();
        late.sort_unstable();
        let median = late[late.len() / 2];
        let p99 = late[late.len() * 99 / 100];
        assert!(median < 20_000, "median sojourn {median} µs");
        assert!(p99 < 60_000, "99th percentile sojourn {p99} µs");
    }
}

#[test]
fn drops_start_only_after_an_interval_above_target() {
    let mut fq = q(false);
    for i in 0..50 {
        fq.push(v4(1000, 0, 1000), i);
    }
    // 20 ms of sojourn: above target, but not yet for an interval
    assert!(fq.pop(20_000).is_some());
    assert!(fq.pop(60_000).is_some());
    assert!(fq.pop(119_000).is_some());
    assert_eq!(fq.stats().codel_drops, 0);
    // an interval after the sojourn first stayed above target: one drop,
    // and the next frame goes out
    assert!(fq.pop(121_000).is_some());
    assert_eq!(fq.stats().codel_drops, 1);
    // the next drop is due an interval later (count 1), then sooner
    assert!(fq.pop(150_000).is_some());
    assert_eq!(fq.stats().codel_drops, 1);
    assert!(fq.pop(222_000).is_some());
    assert_eq!(fq.stats().codel_drops, 2);
    // 100 ms / sqrt(2) = 70.7 ms later
    assert!(fq.pop(290_000).is_some());
    assert_eq!(fq.stats().codel_drops, 2);
    assert!(fq.pop(293_000).is_some());
    assert_eq!(fq.stats().codel_drops, 3);
}

#[test]
fn ecn_capable_packets_are_marked_not_dropped() {
    for ecn in [1u8, 2] {
        let mut fq = FqCodel::new(FqConfig { limit: 1 << 30, ..FqConfig::default() }, 1);
        let sent = overload(&mut fq, ecn, 1_000, 2, 1_000_000);
        let st = fq.stats();
        assert_eq!(st.codel_drops, 0, "ECT({}) frames are marked", 2 - ecn);
        assert!(st.ecn_marks > 5, "{st:?}");
        assert_eq!(sent.len(), 1000);
    }
    // a marked IPv4 header keeps a valid checksum
    let mut m = v4(1, 2, 100);
    let Carries::Frame { ethertype_at } = wire::carries(&m) else { unreachable!() };
    assert!(mark_ce(&mut m[ethertype_at..]));
    assert_eq!(ecn_of(&m), 3);
    let ip = &m[ethertype_at + 2..ethertype_at + 22];
    assert_eq!(csum_fold(csum_add(0, ip)), 0xffff, "header checksum still valid");
    // IPv6: the ECN bits of the traffic class
    let mut m = v6(1, 1);
    assert!(mark_ce(&mut m[ethertype_at..]));
    assert_eq!(ecn_of(&m), 3);
    // not ECN-capable: not marked
    let mut m = v4(1, 0, 100);
    assert!(!mark_ce(&mut m[ethertype_at..]));
    assert_eq!(ecn_of(&m), 0);
}

#[test]
fn not_ecn_capable_frames_are_dropped_even_with_ecn_on() {
    let mut fq = FqCodel::new(FqConfig { limit: 1 << 30, ..FqConfig::default() }, 1);
    overload(&mut fq, 0, 1_000, 2, 1_000_000);
    assert!(fq.stats().codel_drops > 5);
    assert_eq!(fq.stats().ecn_marks, 0);
}

#[test]
fn a_sparse_flow_does_not_wait_behind_a_bulk_one() {
    let mut fq = q(true);
    for i in 0..200 {
        fq.push(v4(1000, 0, 1400), i);
    }
    assert!(fq.pop(300).is_some());
    // a ping arrives behind 199 bulk frames (~280 KiB)
    fq.push(v4(7, 0, 98), 400);
    // it goes out once the bulk flow has used its quantum (one frame):
    // ahead of the 198 others
    let next: Vec<u16> = (0..2).map(|_| sport_of(&fq.pop(500).unwrap())).collect();
    assert!(next.contains(&7), "the new flow is served at once: {next:?}");
    // and the queue's delay is the bulk flow's
    assert!(fq.delay_us(10_000) >= 9_000);
}

#[test]
fn bulk_flows_share_the_link_equally() {
    let mut fq = FqCodel::new(FqConfig { limit: 1 << 30, ..FqConfig::default() }, 3);
    // one flow of big frames, one of small ones, both always backlogged
    for _ in 0..3000 {
        fq.push(v4(1, 0, 1500), 0);
        fq.push(v4(2, 0, 300), 0);
        fq.push(v4(2, 0, 300), 0);
    }
    let mut bytes = [0usize; 3];
    for _ in 0..2000 {
        let m = fq.pop(1000).unwrap();
        bytes[sport_of(&m) as usize] += m.len();
    }
    let ratio = bytes[1] as f64 / bytes[2] as f64;
    assert!((0.8..1.25).contains(&ratio), "bytes per flow {bytes:?}");
}

#[test]
fn control_messages_go_first_and_are_never_dropped_for_frames() {
    let mut fq = q(false);
    // frames far past the limit
    for i in 0..1000 {
        fq.push(v4(1000 + (i % 4), 0, 1500), 0);
    }
    assert!(fq.frame_bytes() <= FqConfig::default().limit);
    assert!(fq.stats().overlimit_drops > 0);
    for _ in 0..100 {
        assert!(fq.push(announce(), 0));
    }
    for _ in 0..100 {
        let m = fq.pop(1_000_000).unwrap();
        assert!(wire::carries(&m) == Carries::Control, "control first");
    }
    // a standing queue of frames, then CoDel drops: never a control message
    let mut fq = FqCodel::new(FqConfig { limit: 1 << 30, ..FqConfig::default() }, 1);
    let mut now = 0;
    let mut controls = 0;
    for i in 0..20_000u64 {
        fq.push(v4(1000, 0, 1000), now);
        fq.push(v4(1000, 0, 1000), now);
        if i % 50 == 0 {
            fq.push(announce(), now);
        }
        if let Some(m) = fq.pop(now) {
            controls += usize::from(wire::carries(&m) == Carries::Control);
        }
        now += 1000;
    }
    while let Some(m) = fq.pop(now) {
        controls += usize::from(wire::carries(&m) == Carries::Control);
    }
    assert!(fq.stats().codel_drops > 100);
    assert_eq!(controls, 400, "every control message went out");
    assert_eq!(fq.stats().control_drops, 0);
}

#[test]
fn control_queue_is_bounded_too() {
    let mut fq = FqCodel::new(FqConfig { control_limit: 100, ..FqConfig::default() }, 1);
    let a = announce();
    let fit = 100 / a.len();
    for _ in 0..fit {
        assert!(fq.push(a.clone(), 0));
    }
    assert!(!fq.push(a.clone(), 0));
    assert_eq!(fq.stats().control_drops, 1);
}

#[test]
fn overflow_drops_from_the_longest_flow_not_a_sparse_one() {
    let mut fq = q(false);
    fq.push(v4(7, 0, 98), 0);
    for _ in 0..1000 {
        fq.push(v4(1000, 0, 1500), 0);
    }
    assert!(fq.frame_bytes() <= FqConfig::default().limit);
    assert!(fq.stats().overlimit_drops >= 1000 - 256 * 1024 / 1503);
    // the sparse flow's frame is still there, and goes out first
    assert_eq!(sport_of(&fq.pop(0).unwrap()), 7);
    // a single frame bigger than the limit is still taken by an empty queue
    let mut fq = FqCodel::new(FqConfig { limit: 1000, ..FqConfig::default() }, 1);
    fq.push(v4(1, 0, 1500), 0);
    assert_eq!(fq.len(), 1);
}

#[test]
fn emptied_queue_gives_its_memory_back() {
    let mut fq = q(false);
    for _ in 0..10 {
        fq.push(v4(1, 0, 1500), 0);
    }
    while fq.pop(0).is_some() {}
    assert!(fq.is_empty());
    assert_eq!(fq.bytes(), 0);
    assert_eq!(fq.delay_us(5), 0);
    fq.shrink();
    assert!(fq.flows.is_empty());
}

#[test]
fn flows_hash_on_addresses_and_ports() {
    let a = v4(1000, 0, 200);
    let b = v4(1001, 0, 200);
    let at = |m: &[u8]| match wire::carries(m) {
        Carries::Frame { ethertype_at } => ethertype_at,
        Carries::Control => unreachable!(),
    };
    assert_eq!(flow_hash(&a, at(&a), 9), flow_hash(&v4(1000, 2, 300), at(&a), 9));
    assert_ne!(flow_hash(&a, at(&a), 9), flow_hash(&b, at(&b), 9));
    assert_ne!(flow_hash(&a, at(&a), 9), flow_hash(&a, at(&a), 10), "the seed perturbs");
    // junk after the EtherType does not panic
    let mut m = Vec::new();
    assert!(wire::encode_unicast(&mut m, &[0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0x45]));
    let _ = flow_hash(&m, at(&m), 1);
    let mut c = m.clone();
    assert!(!mark_ce(&mut c[at(&m)..]));
}
