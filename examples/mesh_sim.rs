//! Scale figures for invpnd's protocol from the mesh simulator: for each
//! size, a random mesh of degree 3-8 with 1-20 ms links and 5 s
//! announcements, it reports the time until every node routes to every
//! other, the control-plane traffic per node in steady state, and how long
//! after a node crashes every pair of live nodes reaches each other again.
//!
//!     cargo run --release --example mesh_sim -- 10 50 200 1000

use std::time::Instant;

use invpn::sim::{Sim, SimConfig};

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![10, 50, 200, 1000] } else { sizes };
    println!(
        "| nodes | links | mean degree | converged after, ms | control bytes/node/s | control msgs/node/s | crash: all pairs reachable again after, ms | wall time, s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let wall = Instant::now();
        let mut sim = Sim::new(SimConfig::new(n, 42));
        let (links, degree) = (sim.edges(), sim.mean_degree());
        let conv = sim.converge(60_000);
        // steady state: 30 s of simulated time
        sim.settle(10_000);
        let (b0, m0, t0) = (sim.control_bytes, sim.control_msgs, sim.now());
        sim.settle(30_000);
        let secs = (sim.now() - t0) as f64 / 1000.0;
        let bps = (sim.control_bytes - b0) as f64 / n as f64 / secs;
        let mps = (sim.control_msgs - m0) as f64 / n as f64 / secs;
        // crash the best-connected node (if the rest stays connected)
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|i| std::cmp::Reverse(sim.neighbours(*i).len()));
        let victim = order.into_iter().take(20).find(|&v| {
            let mut probe = Sim::new(SimConfig::new(n, 42));
            probe.crash(v);
            probe.connected()
        });
        let recovery = victim.map(|v| {
            sim.crash(v);
            let start = sim.now();
            loop {
                let (ok, total) = sim.reachability(2000);
                if ok == total || sim.now() - start > 30_000 {
                    break sim.now() - start;
                }
                sim.settle(50);
            }
        });
        println!(
            "| {n} | {} | {:.1} | {} | {:.0} | {:.0} | {} | {:.1} |",
            links,
            degree,
            conv.map_or("not converged".into(), |t| t.to_string()),
            bps,
            mps,
            recovery.map_or("-".into(), |t| t.to_string()),
            wall.elapsed().as_secs_f64()
        );
    }
}
