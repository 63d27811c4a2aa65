//! Direct links on demand: a node that streams to another node it reaches
//! only through a relay dials it directly, outside `max_links` at both
//! ends, and the link closes once idle (`[network] direct`, `direct_idle`).
//!
//! Three nodes on one switch: R, and A and B with `max_links = 1`, each
//! given R as its seed, so that A reaches B through R until A sends it a
//! stream.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn links(n: &Node) -> Vec<serde_json::Value> {
    n.query("links").as_array().cloned().unwrap_or_default()
}

fn link_to(links: &[serde_json::Value], peer: u8) -> Option<&serde_json::Value> {
    links.iter().find(|l| l["peer"] == mac(peer).to_string())
}

fn next_hop(n: &Node, to: u8) -> String {
    let routes = n.query("routes");
    let target = mac(to).to_string();
    routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["target"] == target))
        .and_then(|r| r["next_hop"].as_str())
        .unwrap_or("")
        .to_string()
}

/// R (node 1, the relay), A (2) and B (3) on one switch; A and B keep one
/// link each, to R, plus `extra` in their `[network]` section.
fn relay_lab(lab: &mut Lab, pki: &Pki, extra: &[&str]) -> (Node, Node, Node) {
    relay_lab_seeded(lab, pki, extra, false)
}

/// As [`relay_lab`]; with `pair`, A's seed is B instead of R, so that A
/// and B are neighbours (the direct pair to compare with).
fn relay_lab_seeded(lab: &mut Lab, pki: &Pki, extra: &[&str], pair: bool) -> (Node, Node, Node) {
    lab.switch(&[0, 1, 2], 1);
    let r = Node::start(
        lab,
        0,
        pki,
        NodeConf { bind: Some("198.18.1.1".into()), ..NodeConf::new(1, mac(1)) },
    );
    assert!(r.wait_log(10, " started: "), "R did not start");
    let leaf = |i: usize, n: u8| {
        let mut network_extra = vec!["max_links = 1".to_string()];
        network_extra.extend(extra.iter().map(|s| s.to_string()));
        Node::start(
            lab,
            i,
            pki,
            NodeConf {
                bind: Some(format!("198.18.1.{}", i + 1)),
                init: vec![if pair && n == 2 {
                    seed(3, "198.18.1.3")
                } else {
                    seed(1, "198.18.1.1")
                }],
                network_extra,
                ..NodeConf::new(n, mac(n))
            },
        )
    };
    let (a, b) = (leaf(1, 2), leaf(2, 3));
    (r, a, b)
}

/// Whether `test` runs: as root, with iperf3 (which .ci/run installs).
fn runs(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    assert!(
        Command::new("iperf3").arg("--version").output().is_ok(),
        "{test}: iperf3 is needed (scripts/ensure-deps.sh installs it)"
    );
    true
}

/// [`relay_lab`], once A reaches B through R.
fn relayed(pki: &Pki, extra: &[&str]) -> (Lab, Node, Node, Node) {
    let mut lab = Lab::new(3);
    let (r, a, b) = relay_lab(&mut lab, pki, extra);
    assert!(wait_until(20, || lab.ping(1, "198.19.0.3")), "A cannot reach B through R");
    (lab, r, a, b)
}

#[test]
fn a_stream_through_a_relay_gets_a_direct_link_that_closes_when_idle() {
    let test = "direct::a_stream_through_a_relay_gets_a_direct_link_that_closes_when_idle";
    if !runs(test) {
        return;
    }
    let pki = Pki::new();
    let (lab, r, a, b) = relayed(&pki, &["direct_idle = 3s"]);
    let before = links(&a);
    assert_eq!(before.len(), 1, "A keeps one link: {before:?}");
    assert!(link_to(&before, 1).is_some(), "A's link is to R: {before:?}");
    assert_eq!(next_hop(&a, 3), mac(1).to_string(), "A's route to B leads through R");
    // a few pings are no reason for a direct link
    for _ in 0..5 {
        lab.ping(1, "198.19.0.3");
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(links(&a).len(), 1, "pings made a direct link: {:?}", links(&a));

    // a stream: a direct link comes up, and the route moves to it
    let server = Iperf3Server::start(&lab, 2, 5201);
    let started = Instant::now();
    let mut client = Command::new("timeout")
        .args(["30", "ip", "netns", "exec", lab.ns(1), "iperf3", "-c", "198.19.0.3"])
        .args(["-p", "5201", "-t", "6", "-J", "--connect-timeout", "5000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut direct_after = None;
    wait_until(8, || {
        let l = links(&a);
        if link_to(&l, 3).is_some_and(|e| e["direct"] == true) {
            direct_after = Some(started.elapsed());
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    let output = {
        let _ = client.wait();
        let mut out = Vec::new();
        std::io::Read::read_to_end(client.stdout.as_mut().unwrap(), &mut out).unwrap();
        out
    };
    drop(server);
    let mbit = iperf3_mbit(&output);
    eprintln!("{test}: direct link after {direct_after:?}; the stream made {mbit:.0} Mbit/s");
    let after = direct_after.expect("no direct link from A to B while A streamed to B");
    assert!(after < Duration::from_secs(5), "the direct link took {after:?}");
    assert!(mbit > 0.0, "the stream did not run");
    assert_eq!(next_hop(&a, 3), mac(3).to_string(), "A's route to B took the direct link");
    assert_eq!(a.query("status")["direct_links"], 1, "A's status counts no direct link");
    let (_, text, _) = invpnctl(&["--socket", a.socket().to_str().unwrap(), "status"]);
    assert!(text.contains("links:        2 (1 direct)"), "{text}");
    // B took it as direct: outside its max_links of 1, kept past nothing
    let at_b = links(&b);
    assert!(link_to(&at_b, 2).is_some_and(|e| e["direct"] == true), "at B: {at_b:?}");
    assert!(a.log_text().contains("for a direct link"), "A's log says nothing");
    // the relay is not closed for it
    assert!(link_to(&links(&a), 1).is_some(), "A lost its link to R");

    // idle: closed after direct_idle, and B is reached through R again
    assert!(
        wait_until(15, || links(&a).len() == 1 && links(&b).len() == 1),
        "the idle direct link stayed: {:?}",
        links(&a)
    );
    assert!(a.closes("idle") + b.closes("idle") >= 1, "no close counted as idle");
    assert!(wait_until(10, || lab.ping(1, "198.19.0.3")), "A lost B after the direct link went");
    assert!(wait_until(5, || next_hop(&a, 3) == mac(1).to_string()), "A's route to B");
    drop((r, a, b));
}

#[test]
fn with_direct_off_a_stream_stays_on_the_relay() {
    let test = "direct::with_direct_off_a_stream_stays_on_the_relay";
    if !runs(test) {
        return;
    }
    let pki = Pki::new();
    let (lab, r, a, b) = relayed(&pki, &["direct = off"]);
    let mbit = stream(&lab, 1, "198.19.0.3", 3);
    eprintln!("{test}: the stream made {mbit:.0} Mbit/s through R");
    assert!(mbit > 0.0, "the stream did not run");
    assert_eq!(links(&a).len(), 1, "A made a direct link: {:?}", links(&a));
    assert_eq!(next_hop(&a, 3), mac(1).to_string());
    drop((r, a, b));
}

/// `iperf3` from namespace `from` to `to` for `secs` seconds (Mbit/s
/// received; 0 if it did not run).
fn stream(lab: &Lab, from: usize, to: &str, secs: u32) -> f64 {
    let server = Iperf3Server::start(lab, 2, 5201);
    let client = Command::new("timeout")
        .args([&(secs + 20).to_string(), "ip", "netns", "exec", lab.ns(from), "iperf3", "-c", to])
        .args(["-p", "5201", "-t", &secs.to_string(), "-J", "--connect-timeout", "5000"])
        .output()
        .unwrap();
    drop(server);
    iperf3_mbit(&client.stdout)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Throughput from A to B: through R with `direct = off`, with direct links
/// on (the first stream, which starts on the relay, and a second once the
/// direct link is up), and as neighbours from the start; interleaved
/// rounds (`INVPN_DIRECT_ROUNDS`, default 3), medians.
#[test]
#[ignore = "a benchmark: make bench-direct"]
fn direct_links_throughput() {
    let test = "direct::direct_links_throughput";
    if !runs(test) {
        return;
    }
    let rounds: usize =
        std::env::var("INVPN_DIRECT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let secs = 5;
    let pki = Pki::new();
    let (mut relayed, mut first, mut second, mut pair, mut after) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let ready = |lab: &Lab| assert!(wait_until(20, || lab.ping(1, "198.19.0.3")), "no route");
    for round in 0..rounds {
        {
            let mut lab = Lab::new(3);
            let nodes = relay_lab(&mut lab, &pki, &["direct = off"]);
            ready(&lab);
            relayed.push(stream(&lab, 1, "198.19.0.3", secs));
            drop(nodes);
        }
        {
            let mut lab = Lab::new(3);
            let (r, a, b) = relay_lab(&mut lab, &pki, &[]);
            ready(&lab);
            let started = Instant::now();
            let watch = std::thread::scope(|s| {
                let h = s.spawn(|| stream(&lab, 1, "198.19.0.3", secs));
                let mut at = None;
                wait_until(u64::from(secs), || {
                    let up = link_to(&links(&a), 3).is_some_and(|e| e["direct"] == true);
                    if up {
                        at = Some(started.elapsed().as_secs_f64());
                    }
                    up
                });
                (h.join().unwrap(), at)
            });
            first.push(watch.0);
            after.push(watch.1.unwrap_or(f64::NAN));
            second.push(stream(&lab, 1, "198.19.0.3", secs));
            drop((r, a, b));
        }
        {
            let mut lab = Lab::new(3);
            let nodes = relay_lab_seeded(&mut lab, &pki, &[], true);
            ready(&lab);
            pair.push(stream(&lab, 1, "198.19.0.3", secs));
            drop(nodes);
        }
        eprintln!(
            "{test}: round {}: through R {:.0}, direct on: first stream {:.0} (direct link \
             after {:.2} s), second {:.0}, neighbours {:.0} Mbit/s",
            round + 1,
            relayed[round],
            first[round],
            after[round],
            second[round],
            pair[round]
        );
    }
    println!(
        "| through the relay (direct = off) | direct on, first {secs} s stream | direct on, next \
         stream | neighbours from the start | direct link up after |"
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {:.0} Mbit/s | {:.0} Mbit/s | {:.0} Mbit/s | {:.0} Mbit/s | {:.2} s |",
        median(relayed),
        median(first),
        median(second),
        median(pair),
        median(after)
    );
}
