//! One authenticated node floods announcements for 100,000 invented MACs
//! (issue 12): the victim's memory stays bounded, the flood takes only the
//! hostile link's share of the route tables, and a new honest node joins
//! within seconds, during the flood and after it.
//!
//! The honest node H takes no connections, so the new node can reach it
//! only through the victim's relay and H's route table: before route shares,
//! the flood filled every table up to `max_routes` and H refused the new
//! node until the invented routes expired.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hostile::{now_ms, Hostile, HOSTILE};
use common::*;
use invpn::core::{wire, Mac};

/// Invented MACs announced.
const INVENTED: u32 = 100_000;
/// How long the flood lasts at most.
const FLOOD: Duration = Duration::from_secs(20);

/// A figure of a process's /proc status (`VmHWM:` its peak resident
/// memory, `VmRSS:` its resident memory now), in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn drops(n: &Node, reason: &str) -> u64 {
    n.query("status")["drops"][reason].as_u64().unwrap_or(0)
}

/// Floods announcements of [`INVENTED`] MACs, in batches, over and over
/// with fresh ids, until the time is up or `stop` is set; `sent` counts
/// them. Returns how many were sent, and the hostile node, still linked.
fn flood(mut h: Hostile, stop: Arc<AtomicBool>, sent: Arc<AtomicU32>) -> (u32, Hostile) {
    let started = Instant::now();
    let mut i = 0u32;
    while started.elapsed() < FLOOD && !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::with_capacity(500 * 32);
        for _ in 0..500 {
            let b = (i % INVENTED).to_be_bytes();
            let m = Mac([0x02, 0xee, b[1], b[2], b[3], 0x01]);
            let a = wire::Announce {
                version: 1,
                id: now_ms(),
                mac: m,
                port: 41744,
                addr: wire::AnnouncedAddr::None,
            };
            wire::encode_announce(&mut batch, &a);
            i += 1;
        }
        h.send(&batch);
        sent.store(i, Ordering::Relaxed);
        // about 12,000 a second
        std::thread::sleep(Duration::from_millis(40));
        if i % 5_000 == 0 {
            // keep the hostile node's own route fresh
            h.announce(common::mac(HOSTILE));
        }
    }
    (i, h)
}

/// Starts node `n` in namespace 3, seeded with the victim, and waits up
/// to `secs` for it and H (namespace 1) to reach each other; returns the
/// node and how long that took from its start.
fn join(lab: &Lab, pki: &Pki, n: u8, secs: u64) -> (Node, Option<Duration>) {
    let t = Instant::now();
    let node = Node::start(
        lab,
        3,
        pki,
        NodeConf { init: vec![seed(1, "198.18.1.1")], ..NodeConf::new(n, mac(n)) },
    );
    let ok =
        wait_until(secs, || lab.ping(3, "198.19.0.2") && lab.ping(1, &format!("198.19.0.{n}")));
    (node, ok.then(|| t.elapsed()))
}

#[test]
fn a_flood_of_invented_routes_takes_only_its_share_and_new_nodes_still_join() {
    if !root_or_skip("a_flood_of_invented_routes_takes_only_its_share_and_new_nodes_still_join") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(4);
    lab.switch(&[0, 1, 2, 3], 1);
    let victim = Node::start(&lab, 0, &pki, NodeConf::new(1, mac(1)));
    let honest = Node::start(
        &lab,
        1,
        &pki,
        NodeConf {
            init: vec![seed(1, "198.18.1.1")],
            network_extra: vec!["no_incoming = yes".into()],
            ..NodeConf::new(2, mac(2))
        },
    );
    assert!(wait_until(15, || lab.ping(1, "198.19.0.1")), "{}", honest.log_text());

    let h = Hostile::link(&lab, 2, &pki, "198.18.1.1:41744");
    assert!(
        victim.wait_log(10, &format!("link up: peer={}", mac(HOSTILE))),
        "{}",
        victim.log_text()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU32::new(0));
    let flooding = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || flood(h, stop, sent))
    };

    // a new node joins while the flood goes on, once every invented MAC
    // has been announced
    assert!(wait_until(15, || sent.load(Ordering::Relaxed) >= INVENTED));
    let (mut during, joined) = join(&lab, &pki, 3, 15);
    let still_flooding = !flooding.is_finished();
    let victim_routes = victim.query("status")["routes"].as_u64().unwrap_or(0);
    let honest_routes = honest.query("status")["routes"].as_u64().unwrap_or(0);
    eprintln!(
        "during the flood: joined after {joined:?} (flood still on: {still_flooding}); \
         routes: victim {victim_routes}, honest {honest_routes}"
    );
    assert!(joined.is_some(), "a new node did not join during the flood: {}", honest.log_text());
    assert!(still_flooding, "the flood ended before the new node had joined: too slow a writer");
    // the flood took its share and no more, at the victim and behind it
    let links = victim.query("links");
    let hostile_routes = links
        .as_array()
        .and_then(|l| l.iter().find(|x| x["peer"] == mac(HOSTILE).to_string()))
        .map(|x| x["routes"].as_u64().unwrap_or(0));
    eprintln!("the hostile link holds {hostile_routes:?} routes");
    // the default share: half of what 32 MiB holds (invpnd -t says 5616)
    assert!(hostile_routes.is_some_and(|n| n > 1000 && n <= 5_617), "{hostile_routes:?}");
    during.stop();
    stop.store(true, Ordering::Relaxed);
    let (sent, mut h) = flooding.join().unwrap();
    eprintln!("{sent} invented MACs announced");
    assert!(sent >= INVENTED, "only {sent} announced");

    assert!(drops(&victim, "route_share") > 0, "the victim refused nothing");
    assert!(victim_routes < 20_000, "the victim holds {victim_routes} routes");
    assert!(honest_routes < 10_000, "the honest node holds {honest_routes} routes");

    // and a new node joins after it, while the invented routes are still
    // held (the hostile node stays linked)
    h.announce(mac(HOSTILE));
    let (after, joined) = join(&lab, &pki, 4, 15);
    eprintln!("after the flood: joined after {joined:?}");
    assert!(joined.is_some(), "a new node did not join after the flood: {}", honest.log_text());
    assert!(after.query("status")["routes"].as_u64().unwrap_or(0) < 10_000);
    drop(h);

    let rss = peak_rss_kib(victim.pid());
    eprintln!("victim peak RSS {} MiB", rss / 1024);
    assert!(rss > 0 && rss < 64 * 1024, "the victim's peak RSS was {rss} KiB");
}

/// The resident memory of a process now (VmRSS), in KiB.
fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Issue 11's memory target, from one node's side: a node that knows
/// 10,000 nodes, each of which has just broadcast (an ARP request, say),
/// stays under 64 MiB resident. One neighbour announces the 10,000 and a
/// broadcast from each (the node's share per link is raised so that one
/// link may carry them all).
#[test]
fn a_node_that_knows_ten_thousand_nodes_that_broadcast_stays_under_64_mib() {
    if !root_or_skip("a_node_that_knows_ten_thousand_nodes_that_broadcast_stays_under_64_mib") {
        return;
    }
    const NODES: u32 = 10_000;
    let pki = Pki::new();
    let mut lab = Lab::new(2);
    lab.switch(&[0, 1], 1);
    let conf = NodeConf {
        extra: "[limits]\nroutes_per_link = 11000\n".into(),
        ..NodeConf::new(1, mac(1))
    };
    let node = Node::start(&lab, 0, &pki, conf);
    // the hostile end dials once: the node must be listening by then
    assert!(node.wait_log(10, " started: "), "{}", node.log_text());
    let mut h = Hostile::link(&lab, 1, &pki, "198.18.1.1:41744");
    assert!(node.wait_log(10, &format!("link up: peer={}", mac(HOSTILE))), "{}", node.log_text());
    let at_start = rss_kib(node.pid());
    let behind = |i: u32| {
        let b = i.to_be_bytes();
        Mac([0x02, 0xdd, b[1], b[2], b[3], 0x01])
    };
    for first in (0..NODES).step_by(500) {
        let mut batch = Vec::new();
        for i in first..first + 500 {
            let a = wire::Announce {
                version: 1,
                id: now_ms(),
                mac: behind(i),
                port: 41744,
                addr: wire::AnnouncedAddr::None,
            };
            wire::encode_announce(&mut batch, &a);
        }
        h.send(&batch);
        std::thread::sleep(Duration::from_millis(20));
    }
    let status_u64 = |k: &str| node.query("status")[k].as_u64().unwrap_or(0);
    assert!(wait_until(15, || status_u64("routes") > u64::from(NODES)), "{}", node.log_text());
    // each of them broadcasts once: an ARP request for the node
    for first in (0..NODES).step_by(500) {
        let mut batch = Vec::new();
        for i in first..first + 500 {
            let mut frame = Mac::BROADCAST.0.to_vec();
            frame.extend_from_slice(&behind(i).0);
            frame.extend_from_slice(&[0x08, 0x06]);
            frame.resize(14 + 28, 0);
            wire::encode_broadcast(&mut batch, now_ms(), &frame);
        }
        h.send(&batch);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        wait_until(15, || status_u64("dedup_sources") >= u64::from(NODES)),
        "windows for {} sources",
        status_u64("dedup_sources")
    );
    let (now, peak) = (rss_kib(node.pid()), peak_rss_kib(node.pid()));
    eprintln!(
        "knowing {} nodes with {} windows: RSS {} KiB (at the start {at_start} KiB), peak {} KiB",
        status_u64("routes"),
        status_u64("dedup_sources"),
        now,
        peak
    );
    drop(h);
    assert!(peak > 0 && peak < 64 * 1024, "peak RSS {peak} KiB");
}
