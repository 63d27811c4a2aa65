//! One authenticated node turned hostile, in network namespaces: health
//! requests as an amplifier, forged broadcast ids, and a clock stepping
//! back (issue 12). The hostile node is `openssl s_client` with a valid
//! certificate, fed messages by the test.

mod common;

use std::time::{Duration, Instant};

use common::hostile::{now_ms, Hostile, HOSTILE};
use common::*;
use invpn::core::{wire, Mac};

fn drops(n: &Node, reason: &str) -> u64 {
    n.query("status")["drops"][reason].as_u64().unwrap_or(0)
}

/// Bytes a node has received on all its links.
fn bytes_in(n: &Node) -> u64 {
    let links = n.query("links");
    links.as_array().map_or(0, |l| l.iter().map(|x| x["bytes_in"].as_u64().unwrap_or(0)).sum())
}

/// Forgets the overlay's neighbours in namespace `i`, so that the next
/// ping starts with an ARP broadcast.
fn flush_neighbours(lab: &Lab, i: usize, n: &Node) {
    lab.exec_ok(i, &["ip", "neigh", "flush", "dev", &n.ifname()]);
}

/// Nodes 1 (namespace 0) and 2 (namespace 1) linked, node 2 started with
/// `env`; namespace 2 is free for a hostile node. All on one switch.
fn two_nodes(pki: &Pki, env: Vec<(String, String)>) -> (Lab, Node, Node) {
    let mut lab = Lab::new(3);
    lab.switch(&[0, 1, 2], 1);
    let a = Node::start(&lab, 0, pki, NodeConf::new(1, mac(1)));
    let b = Node::start(
        &lab,
        1,
        pki,
        NodeConf { init: vec![seed(1, "198.18.1.1")], env, ..NodeConf::new(2, mac(2)) },
    );
    assert!(wait_until(15, || lab.ping(1, "198.19.0.1")), "{}", b.log_text());
    (lab, a, b)
}

#[test]
fn health_requests_naming_a_third_node_are_not_amplified() {
    if !root_or_skip("health_requests_naming_a_third_node_are_not_amplified") {
        return;
    }
    let pki = Pki::new();
    let (lab, a, victim) = two_nodes(&pki, Vec::new());
    let mut h = Hostile::link(&lab, 2, &pki, "198.18.1.1:41744");
    assert!(a.wait_log(10, &format!("link up: peer={}", mac(HOSTILE))), "{}", a.log_text());
    // a route table worth amplifying: 300 invented nodes behind the hostile one
    for i in 0..300u16 {
        let b = i.to_be_bytes();
        h.announce(Mac([2, 0x99, 0, 0, b[0], b[1]]));
    }
    std::thread::sleep(Duration::from_secs(2));
    // what the victim receives anyway, for 3 s
    let window = Duration::from_secs(3);
    let t0 = bytes_in(&victim);
    let start = Instant::now();
    while start.elapsed() < window {
        h.announce(mac(HOSTILE));
        std::thread::sleep(Duration::from_millis(500));
    }
    let quiet = bytes_in(&victim) - t0;
    // then for 3 s with requests naming the victim as their origin
    let t1 = bytes_in(&victim);
    let before = h.sent;
    let start = Instant::now();
    let mut k = 0u64;
    while start.elapsed() < window {
        if k % 25 == 0 {
            h.announce(mac(HOSTILE));
        }
        let mut req = Vec::new();
        wire::encode_health_request(&mut req, 1, now_ms() + k, mac(2), &[]);
        h.send(&req);
        k += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let attacked = bytes_in(&victim) - t1;
    let sent = (h.sent - before) as u64;
    let extra = attacked.saturating_sub(quiet);
    eprintln!("hostile sent {sent} B; the victim received {attacked} B, {quiet} B when quiet");
    assert!(extra <= sent, "amplified {:.1}x: {extra} B for {sent} B", extra as f64 / sent as f64);
    assert!(drops(&a, "off_path") >= k / 2, "{}", a.query("status"));
    // the victim's own traces still work
    let trace = victim.query("trace");
    assert!(trace.to_string().contains("02:50:56:00:00:01"), "{trace}");
}

#[test]
fn a_forged_broadcast_id_from_off_the_path_suppresses_nothing() {
    if !root_or_skip("a_forged_broadcast_id_from_off_the_path_suppresses_nothing") {
        return;
    }
    let pki = Pki::new();
    let (lab, a, b) = two_nodes(&pki, Vec::new());
    let mut h = Hostile::link(&lab, 2, &pki, "198.18.1.1:41744");
    assert!(a.wait_log(10, &format!("link up: peer={}", mac(HOSTILE))), "{}", a.log_text());
    // node 2's broadcasts, forged by the hostile node with ids 50 s ahead
    // (0.4 and earlier invpnd then dropped node 2's broadcasts for 50 s)
    let mut frame = Mac::BROADCAST.0.to_vec();
    frame.extend_from_slice(&mac(2).0);
    frame.extend_from_slice(&[0x88, 0xb5, 0, 0, 0, 0]);
    frame.resize(60, 0);
    let forge = |h: &mut Hostile| {
        let mut f = Vec::new();
        wire::encode_broadcast(&mut f, now_ms() + 50_000, &frame);
        h.send(&f);
        h.announce(mac(HOSTILE));
    };
    forge(&mut h);
    std::thread::sleep(Duration::from_millis(300));
    // node 2's ARP requests (broadcasts) still reach node 1, time after time
    for round in 0..4 {
        forge(&mut h);
        flush_neighbours(&lab, 1, &b);
        assert!(
            lab.ping(1, "198.19.0.1") || lab.ping(1, "198.19.0.1"),
            "round {round}: node 2's broadcasts suppressed; {}",
            a.query("status")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(drops(&a, "off_path") >= 4, "{}", a.query("status"));
}

#[test]
fn a_clock_stepping_back_ten_minutes_leaves_broadcasts_flowing() {
    if !root_or_skip("a_clock_stepping_back_ten_minutes_leaves_broadcasts_flowing") {
        return;
    }
    let pki = Pki::new();
    let offset = pki.path("clock-offset");
    std::fs::write(&offset, "0").unwrap();
    let hook = invpn::daemon::clock::TEST_OFFSET_VAR.to_string();
    let (lab, a, b) = two_nodes(&pki, vec![(hook, offset.display().to_string())]);
    assert!(lab.ping(0, "198.19.0.2"));
    // node 2's wall clock steps back ten minutes
    std::fs::write(&offset, "-600000").unwrap();
    // within one announce interval (1 s here) broadcasts flow both ways:
    // each ping starts with an ARP broadcast
    std::thread::sleep(Duration::from_secs(1));
    for round in 0..5 {
        for (from, to, n) in [(1, "198.19.0.1", &b), (0, "198.19.0.2", &a)] {
            flush_neighbours(&lab, from, n);
            assert!(
                lab.ping(from, to) || lab.ping(from, to),
                "round {round}: no broadcast from namespace {from}; {} {}",
                a.query("status"),
                b.query("status")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(a.links_up(), 1, "{}", a.log_text());
    assert!(b.wait_log(5, "the wall clock stepped back"), "{}", b.log_text());
}
