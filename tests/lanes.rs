//! Lanes: between two invpnd nodes, the side that dialled the link dials
//! more connections: two for the frames of sparse flows, which both sides
//! send twice (a ping), once on each, the receiver keeping one copy; and
//! stripes, over which bulk flows spread. With `lanes = no` on either side
//! there are none, and frames take the link.

mod common;

use common::wan::{emulator_or_skip, Wan, WanSpec};
use common::*;

/// A's and B's entries for each other in `links`, once both show `lane`
/// as `want` (or after `secs`).
fn entries(a: &Node, b: &Node, want: bool, secs: u64) -> (serde_json::Value, serde_json::Value) {
    let entry = |n: &Node, peer: u8| {
        let links = n.query("links");
        links
            .as_array()
            .and_then(|l| l.iter().find(|l| l["peer"] == mac(peer).to_string()))
            .cloned()
            .unwrap_or_default()
    };
    let mut got = (entry(a, 2), entry(b, 1));
    wait_until(secs, || {
        got = (entry(a, 2), entry(b, 1));
        got.0["lane"] == want && got.1["lane"] == want
    });
    got
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = run("uname", &["-r"]);
    let mut v = release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (major, minor)
}

fn counter(n: &Node, name: &str) -> u64 {
    n.query("status")["counters"][name].as_u64().unwrap_or(0)
}

fn two_nodes(lab: &Lab, pki: &Pki, b_extra: &str) -> (Node, Node) {
    let a = Node::start(
        lab,
        0,
        pki,
        NodeConf { bind: Some("198.18.1.1".into()), ..NodeConf::new(1, mac(1)) },
    );
    let b = Node::start(
        lab,
        1,
        pki,
        NodeConf {
            init: vec![seed(1, "198.18.1.1")],
            extra: b_extra.to_string(),
            ..NodeConf::new(2, mac(2))
        },
    );
    (a, b)
}

/// Two nodes over a plain veth, B given `b_extra`, once a ping crosses.
fn clean_pair(pki: &Pki, b_extra: &str) -> (Lab, Node, Node) {
    let mut lab = Lab::new(2);
    lab.link(0, 1, 1);
    let (a, b) = two_nodes(&lab, pki, b_extra);
    assert!(wait_until(20, || lab.ping(1, "198.19.0.1")), "no ping across the link");
    (lab, a, b)
}

#[test]
fn sparse_flows_take_the_lane_both_ways() {
    if !root_or_skip("lanes::sparse_flows_take_the_lane_both_ways") {
        return;
    }
    let pki = Pki::new();
    let (lab, a, b) = clean_pair(&pki, "");
    let (ea, eb) = entries(&a, &b, true, 15);
    assert!(ea["lane"] == true && eb["lane"] == true, "no lane: A {ea}, B {eb}");
    // B dialled the link, so B dialled the lane; one link each way still
    assert_eq!(ea["direction"], "in", "{ea}");
    assert_eq!(eb["direction"], "out", "{eb}");
    assert_eq!(a.query("links").as_array().map(|l| l.len()), Some(1), "the lane is no link");

    // all of them: two sparse lanes and the default three stripes
    assert!(wait_until(10, || entries(&a, &b, true, 1).0["lanes"] == 5), "lanes: {ea}");
    let (ea, eb) = entries(&a, &b, true, 1);
    assert_eq!(ea["lanes"], 5, "{ea}");
    assert_eq!(eb["lanes"], 5, "{eb}");
    let (a0, b0) = (counter(&a, "lane_frames"), counter(&b, "lane_frames"));
    let (ta, tb) = (counter(&a, "twins_in"), counter(&b, "twins_in"));
    let (da, db) = (counter(&a, "twins_discarded"), counter(&b, "twins_discarded"));
    let out = run(
        "ip",
        &["netns", "exec", lab.ns(0), "ping", "-c", "10", "-i", "0.05", "-W", "2", "198.19.0.2"],
    );
    assert!(out.contains(" 0% packet loss"), "pings lost over the lanes:\n{out}");
    // each copy arrived, one of each pair was kept: no duplicate replies
    assert!(!out.contains("DUP!"), "duplicates delivered:\n{out}");
    // each side sent its half of the pings on both lanes, as twins
    assert!(counter(&a, "lane_frames") >= a0 + 20, "A's echo requests did not take the lanes");
    assert!(counter(&b, "lane_frames") >= b0 + 20, "B's echo replies did not take the lanes");
    assert!(counter(&b, "twins_in") >= tb + 10, "B kept no twins");
    assert!(counter(&a, "twins_in") >= ta + 10, "A kept no twins");
    assert!(counter(&b, "twins_discarded") >= db + 10, "B discarded no second copies");
    assert!(counter(&a, "twins_discarded") >= da + 10, "A discarded no second copies");
    let (ea, eb) = entries(&a, &b, true, 1);
    for (name, e) in [("A", &ea), ("B", &eb)] {
        let (i, o) = (e["lane_bytes_in"].as_u64(), e["lane_bytes_out"].as_u64());
        assert!(i > Some(1000) && o > Some(1000), "{name}'s lane carried too little: {e}");
    }
    assert!(b.log_count("link down") == 0 && a.log_count("link down") == 0, "a link went down");
    // the lane's loss timers are short (kernels from 6.15 on), the link's
    // the kernel's
    let rtos = |i: usize| -> Vec<u64> {
        let out = run("ip", &["netns", "exec", lab.ns(i), "ss", "-tin", "state", "established"]);
        out.split_whitespace()
            .filter_map(|w| w.strip_prefix("rto:"))
            .filter_map(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .collect()
    };
    for i in 0..2 {
        let r = rtos(i);
        assert_eq!(r.len(), 6, "a link and five lanes: {r:?}");
        if kernel_at_least(6, 15) {
            assert!(r.iter().any(|&v| v < 100), "the lane's timers are the kernel's: {r:?}");
        }
        assert!(r.iter().any(|&v| v >= 200), "the link's timers changed: {r:?}");
    }
    // A accepted the lane on whichever worker came next; it runs on its
    // link's worker (moved there if need be)
    let moved = a.log_count("moved to the worker of its link");
    eprintln!("lanes::sparse_flows_take_the_lane_both_ways: lane moved: {moved}");
}

#[test]
fn no_lane_when_one_side_declines() {
    if !root_or_skip("lanes::no_lane_when_one_side_declines") {
        return;
    }
    let pki = Pki::new();
    // B, which dials, takes no lanes; A offers them, in vain
    let (lab, a, b) = clean_pair(&pki, "[performance]\nlanes = no\n");
    let (ea, eb) = entries(&a, &b, true, 3);
    assert!(ea["lane"] == false && eb["lane"] == false, "a lane anyway: A {ea}, B {eb}");
    assert!(lab.ping(0, "198.19.0.2"));
    assert_eq!(counter(&a, "lane_frames") + counter(&b, "lane_frames"), 0);
    assert_eq!(counter(&a, "twins_in") + counter(&b, "twins_in"), 0);
}

/// Bulk flows spread over the link and its stripes: UDP flows from
/// several ports, each above the sparse rate.
fn udp_flows(lab: &Lab, ns: usize, dst: &str, flows: u16) {
    // a Python one-liner, bounded in time and count: 3 s of 1200-byte
    // datagrams from `flows` source ports, about 4 Mbit/s each
    let script = format!(
        "import socket,time\n\
         ss=[socket.socket(socket.AF_INET,socket.SOCK_DGRAM) for _ in range({flows})]\n\
         end=time.time()+3\n\
         n=0\n\
         while time.time()<end and n<200000:\n\
         \tfor s in ss: s.sendto(b'x'*1200,('{dst}',9))\n\
         \tn+=1\n\
         \ttime.sleep(0.002)\n"
    );
    assert!(lab.exec_ok(ns, &["python3", "-c", &script]), "the UDP flows did not run");
}

#[test]
fn bulk_flows_spread_over_the_stripes_of_a_lossy_path() {
    let test = "lanes::bulk_flows_spread_over_the_stripes_of_a_lossy_path";
    if !root_or_skip(test) {
        return;
    }
    let Some(bin) = emulator_or_skip(test) else { return };
    let pki = Pki::new();
    let lab = Lab::new(2);
    // 5 ms each way, 1 % loss: the links retransmit, so bulk flows stripe
    let _wan = Wan::link(&lab, 0, 1, 1, &bin, WanSpec::new(5.0, 1.0, 100.0));
    // B dials with two stripes
    let (a, b) = two_nodes(&lab, &pki, "[performance]\nstripes = 2\n");
    assert!(wait_until(20, || lab.ping(1, "198.19.0.1")), "no ping across the link");
    assert!(wait_until(15, || entries(&a, &b, true, 1).1["lanes"] == 4), "no stripes");
    let (ea, eb) = entries(&a, &b, true, 1);
    assert_eq!((ea["lanes"].as_u64(), eb["lanes"].as_u64()), (Some(4), Some(4)), "{ea} {eb}");
    let s0 = counter(&b, "stripe_frames");
    // twice: the first run's losses make the path lossy, the second
    // spreads over the stripes (and the first may already have)
    udp_flows(&lab, 1, "198.19.0.1", 16);
    udp_flows(&lab, 1, "198.19.0.1", 16);
    // 16 flows over three connections: some took the stripes; the
    // stripes' bytes show on the lanes of the link
    let sent = counter(&b, "stripe_frames") - s0;
    assert!(sent > 1000, "{sent} frames on stripes");
    let (_, eb) = entries(&a, &b, true, 1);
    assert!(eb["lane_bytes_out"].as_u64() > Some(1_000_000), "{eb}");
    // and the link itself carried its share
    assert!(eb["bytes_out"].as_u64() > Some(1_000_000), "{eb}");
    assert!(b.log_count("link down") == 0 && a.log_count("link down") == 0, "a link went down");
}

#[test]
fn bulk_flows_keep_the_link_of_a_clean_path() {
    if !root_or_skip("lanes::bulk_flows_keep_the_link_of_a_clean_path") {
        return;
    }
    let pki = Pki::new();
    let (lab, a, b) = clean_pair(&pki, "");
    assert!(wait_until(15, || entries(&a, &b, true, 1).1["lanes"] == 5), "no lanes");
    udp_flows(&lab, 1, "198.19.0.1", 16);
    // no loss, no stripes: more connections would only cost the workers
    assert_eq!(counter(&b, "stripe_frames"), 0);
    let (_, eb) = entries(&a, &b, true, 1);
    assert!(eb["bytes_out"].as_u64() > Some(10_000_000), "{eb}");
}
