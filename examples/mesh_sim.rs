//! Scale figures for invpnd's protocol from the mesh simulator: for each
//! size, the time until every node routes to every other, the links per
//! node, the control-plane traffic per node at rest, what one broadcast
//! costs mesh-wide, and how long after the best-connected node crashes
//! every pair of live nodes reaches each other again; and what the
//! simulation itself costs: the messages of the first 10 s (the cold
//! start), the messages in all, and the wall time per message.
//!
//!     cargo run --release --example mesh_sim -- 10 50 200 1000
//!     cargo run --release --example mesh_sim -- --dialled 40 100
//!     cargo run --release --example mesh_sim -- --windows 1000 30
//!     cargo run --release --example mesh_sim -- --cutoff 100
//!
//! By default the mesh is a random graph of degree 3-8 with 1-20 ms links,
//! joined at time 0. With `--dialled` every node runs the daemon's link
//! lifecycle (`core::mesh::Node`, default `max_links` 16; `--max-links N`
//! to change it), starts within the first second with node 0 as its only
//! seed, and builds the mesh as real nodes do; times are then counted from
//! the cold start.

use std::time::Instant;

use invpn::core::wire::kind;
use invpn::core::Mac;
use invpn::sim::{Dialled, Sim, SimConfig};

/// Runs `sim` (of `n` nodes) for `ms` more: its control messages per node
/// per second meanwhile.
fn control_rate(sim: &mut Sim, n: usize, ms: u64) -> f64 {
    let (m0, t0) = (sim.control_msgs, sim.now());
    sim.settle(ms);
    (sim.control_msgs - m0) as f64 / n as f64 / ((sim.now() - t0) as f64 / 1000.0)
}

/// The nodes of `sim` (of `n` nodes), the best-connected first.
fn by_links(sim: &Sim, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|i| std::cmp::Reverse(sim.neighbours(*i).len()));
    order
}

/// `--near SECS`: dialled meshes of nodes on a plane (latency in
/// proportion to distance, 1-40 ms one way), run for SECS simulated
/// seconds with `near_links` off and on; the links' and the routes'
/// latencies, and what the probes cost.
fn near(sizes: &[usize], secs: u64) {
    println!(
        "| nodes | near_links | at, s | link latency, ms mean | path latency, ms mean | stretch | links per node | closes farther / probed / full per node | control msgs/node/s | one broadcast, msgs | wall time, s |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for &n in sizes {
        for on in [false, true] {
            let wall = Instant::now();
            let d = Dialled { near_links: on, ..Dialled::default() };
            let cfg = SimConfig { plane: true, latency: (1, 40), ..SimConfig::dialled(n, 42, d) };
            let mut sim = Sim::new(cfg);
            sim.settle(1_000);
            sim.converge(120_000);
            let mut t: u64 = 60;
            loop {
                let target = t * 1000;
                sim.settle(target.saturating_sub(sim.now()));
                let mps = control_rate(&mut sim, n, 10_000);
                let (link, path, stretch) = sim.latencies(4000);
                let close = |k: &str| *sim.closes.get(k).unwrap_or(&0) as f64 / n as f64;
                let (farther, probed, full) = (close("farther"), close("probed"), close("full"));
                let before = sim.all_msgs - sim.control_msgs;
                sim.send_frame(1 % n, Mac([0xff; 6]), &[0u8; 46]);
                sim.settle(1_000);
                let bcast = sim.all_msgs - sim.control_msgs - before;
                println!(
                    "| {n} | {} | {} | {link:.1} | {path:.1} | {stretch:.2} | {:.1} | {farther:.2} / {probed:.2} / {full:.2} | {mps:.0} | {bcast} | {:.0} |",
                    if on { "yes" } else { "no" },
                    sim.now() / 1000,
                    sim.mean_degree(),
                    wall.elapsed().as_secs_f64()
                );
                if t >= secs {
                    break;
                }
                t = (t * 2).min(secs);
            }
        }
    }
}

/// `--windows INTERVAL_MS`: dialled meshes (three seeds each; messages
/// wait up to 5 ms more, as on a loaded host) with that announce interval,
/// from the cold start: control messages per node per second in each 5 s
/// of the first minute, which shows how long the mesh takes to come to
/// rest, and the links closed because a node was full.
fn windows(sizes: &[usize], interval: u64) {
    let cols: Vec<String> = (0..12).map(|w| format!("{}-{} s", w * 5, w * 5 + 5)).collect();
    println!("| nodes | seed | {} | closes full |", cols.join(" | "));
    println!("|---:|---:|{}---:|", "---:|".repeat(cols.len()));
    for &n in sizes {
        for seed in [11, 12, 13] {
            let cfg = SimConfig {
                announce_interval: interval,
                jitter: 5,
                ..SimConfig::dialled(n, seed, Dialled::default())
            };
            let mut sim = Sim::new(cfg);
            let mut row = Vec::new();
            for _ in 0..12 {
                row.push(format!("{:.0}", control_rate(&mut sim, n, 5_000)));
            }
            let full = sim.closes.get("full").copied().unwrap_or(0);
            println!("| {n} | {seed} | {} | {full} |", row.join(" | "));
        }
    }
}

/// `--cutoff`: dialled meshes (three seeds each) from 1.5 s to 15.5 s or
/// from 30 s on, with the best-connected node crashed at 2, 4, 8 or 30 s or
/// none: the longest time (checked every 50 ms over the same pairs: every
/// pair of live nodes, or 20,000 drawn at random in a larger mesh) one pair
/// of live nodes could not reach the other along the routes, and when it
/// ended.
fn cutoff(sizes: &[usize]) {
    println!("| nodes | crash at | longest cut-off, ms (ended at, s), for seeds 1 / 2 / 3 |");
    println!("|---:|---|---|");
    for &n in sizes {
        for at in [None, Some(2_000u64), Some(4_000), Some(8_000), Some(30_000)] {
            let mut out = Vec::new();
            for seed in [1u64, 2, 3] {
                let mut sim = Sim::new(SimConfig::dialled(n, seed, Dialled::default()));
                sim.settle(at.unwrap_or(1_500));
                if at.is_some() {
                    sim.crash(by_links(&sim, n)[0]);
                }
                let start = sim.now();
                let pairs = sim.pairs(20_000);
                // how long each pair has been cut off
                let mut runs = vec![0u64; pairs.len()];
                let (mut longest, mut ended) = (0u64, 0u64);
                while sim.now() - start < 14_000 {
                    for (run, (a, b)) in runs.iter_mut().zip(&pairs) {
                        if sim.reaches(*a, *b) {
                            *run = 0;
                            continue;
                        }
                        *run += 50;
                        if *run > longest {
                            longest = *run;
                            ended = sim.now();
                        }
                    }
                    sim.settle(50);
                }
                out.push(format!("{longest} ({:.2})", ended as f64 / 1000.0));
            }
            let at = at.map_or("none".to_string(), |t| format!("{} s", t / 1000));
            println!("| {n} | {at} | {} |", out.join(" / "));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--cutoff") {
        let sizes: Vec<usize> = args[i + 1..].iter().filter_map(|a| a.parse().ok()).collect();
        cutoff(if sizes.is_empty() { &[100] } else { &sizes });
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--windows") {
        let interval = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(5_000);
        let sizes: Vec<usize> = args[i + 2..].iter().filter_map(|a| a.parse().ok()).collect();
        windows(if sizes.is_empty() { &[30, 100] } else { &sizes }, interval);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--near") {
        let secs = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(600);
        let sizes: Vec<usize> = args[i + 2..].iter().filter_map(|a| a.parse().ok()).collect();
        near(if sizes.is_empty() { &[100, 300] } else { &sizes }, secs);
        return;
    }
    let dialled = args.iter().any(|a| a == "--dialled");
    let max_links = args
        .iter()
        .position(|a| a == "--max-links")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(invpn::core::mesh::DEFAULT_MAX_LINKS);
    let sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || args[i - 1] != "--max-links")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() { vec![10, 50, 200, 1000] } else { sizes };
    let config = |n: usize| {
        if dialled {
            SimConfig::dialled(n, 42, Dialled { max_links, ..Dialled::default() })
        } else {
            SimConfig::new(n, 42)
        }
    };
    println!(
        "| nodes | links | links per node, mean / max | converged after, ms | control bytes/node/s | control msgs/node/s | copies of an announcement per node | prunes and grafts/node/s | one broadcast, msgs | state per node, KiB mean / max | crash: all pairs reachable again after, ms | messages in the first 10 s, millions | messages in all, millions | wall time per message, us | wall time, s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let wall = Instant::now();
        let mut sim = Sim::new(config(n));
        let conv = if dialled {
            // every node has started after a second
            sim.settle(1_000);
            sim.converge(120_000).map(|_| sim.now())
        } else {
            sim.converge(60_000)
        };
        let rest_from = sim.now() + if dialled { 30_000 } else { 10_000 };
        // what the cold start costs: every message of the first 10 s
        sim.settle(10_000u64.saturating_sub(sim.now()));
        let start_msgs = sim.all_msgs;
        // at rest: 30 s of simulated time, after 30 s more (surplus links
        // close after their 10 s of grace, and the flood tree then
        // settles in a few announce intervals)
        sim.settle(rest_from.saturating_sub(sim.now()));
        let links = sim.edges();
        let per_node: Vec<usize> = (0..n).map(|i| sim.neighbours(i).len()).collect();
        let max_degree = per_node.iter().copied().max().unwrap_or(0);
        let (b0, m0, t0) = (sim.control_bytes, sim.control_msgs, sim.now());
        let announces = |sim: &Sim| {
            sim.by_kind[usize::from(kind::DIRECT_ANNOUNCE)]
                + sim.by_kind[usize::from(kind::ANNOUNCE)]
        };
        let (a0, p0) = (announces(&sim), sim.by_kind[usize::from(kind::PRUNE)]);
        sim.settle(30_000);
        let secs = (sim.now() - t0) as f64 / 1000.0;
        let bps = (sim.control_bytes - b0) as f64 / n as f64 / secs;
        let mps = (sim.control_msgs - m0) as f64 / n as f64 / secs;
        // every node announces once an interval; each of the others gets
        // this many copies of it
        let made = n as f64 * secs * 1000.0 / sim.cfg.announce_interval as f64;
        let copies = (announces(&sim) - a0) as f64 / made / (n - 1).max(1) as f64;
        let pps = (sim.by_kind[usize::from(kind::PRUNE)] - p0) as f64 / n as f64 / secs;
        // one broadcast frame from node 1 (an ARP request, say)
        let before = sim.all_msgs - sim.control_msgs;
        let sent = sim.send_frame(1 % n, Mac([0xff; 6]), &[0u8; 46]);
        sim.settle(1_000);
        let bcast = sim.all_msgs - sim.control_msgs - before;
        let bcast = if sent { bcast.to_string() } else { "-".into() };
        // what each node keeps about the others (a broadcast has just
        // given every node a window for node 1)
        let state: Vec<usize> = (0..n).map(|i| sim.state_bytes(i)).collect();
        let state_mean = state.iter().sum::<usize>() as f64 / n as f64 / 1024.0;
        let state_max = *state.iter().max().unwrap_or(&0) as f64 / 1024.0;
        // crash the best-connected node (if the rest stays connected)
        // (a dialled mesh is dense; a random one may hang on one node)
        let victim =
            by_links(&sim, n).into_iter().take(20).find(|&v| dialled || sim.connected_without(v));
        let recovery = victim.map(|v| {
            sim.crash(v);
            let start = sim.now();
            let pairs = sim.pairs(20_000);
            loop {
                if pairs.iter().all(|(a, b)| sim.reaches(*a, *b)) || sim.now() - start > 30_000 {
                    break sim.now() - start;
                }
                sim.settle(50);
            }
        });
        println!(
            "| {n} | {} | {:.1} / {} | {} | {:.0} | {:.0} | {:.2} | {:.1} | {} | {:.0} / {:.0} | {} | {:.1} | {:.1} | {:.2} | {:.1} |",
            links,
            2.0 * links as f64 / n as f64,
            max_degree,
            conv.map_or("not converged".into(), |t| t.to_string()),
            bps,
            mps,
            copies,
            pps,
            bcast,
            state_mean,
            state_max,
            recovery.map_or("-".into(), |t| t.to_string()),
            start_msgs as f64 / 1e6,
            sim.all_msgs as f64 / 1e6,
            wall.elapsed().as_secs_f64() * 1e6 / sim.all_msgs.max(1) as f64,
            wall.elapsed().as_secs_f64()
        );
    }
}
