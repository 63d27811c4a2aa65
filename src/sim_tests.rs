//! Mesh-wide properties, checked on simulated meshes.

use super::*;

#[test]
fn converges_so_that_every_node_routes_to_every_other() {
    for seed in 1..4 {
        let mut sim = Sim::new(SimConfig::new(40, seed));
        let t = sim.converge(5_000).expect("converged");
        assert!(t < 1_000, "seed {seed}: {t} ms");
        assert_eq!(sim.reachability(10_000), (40 * 39, 40 * 39), "seed {seed}");
        assert!(sim.mean_degree() >= 3.0);
    }
}

#[test]
fn broadcasts_are_delivered_exactly_once_everywhere() {
    let mut sim = Sim::new(SimConfig { latency: (1, 40), ..SimConfig::new(30, 7) });
    sim.converge(5_000).expect("converged");
    sim.delivered.borrow_mut().clear();
    // bursts from two sources; random latencies reorder the copies
    for k in 0..20u8 {
        assert!(sim.send_frame(0, Mac::BROADCAST, &[k; 50]));
        assert!(sim.send_frame(5, Mac([0x33, 0x33, 0, 0, 0, 1]), &[k; 60]));
    }
    sim.settle(500);
    let got = sim.delivered.borrow();
    for node in 0..30 {
        for (src, n) in [(0usize, 20usize), (5, 20)] {
            let count =
                got.iter().filter(|(at, f)| *at == node && f[6..12] == node_mac(src).0).count();
            let want = if node == src { 0 } else { n };
            assert_eq!(count, want, "node {node} got {count} broadcasts from {src}");
        }
    }
    // each distinct frame once per node
    let mut per: Vec<(usize, Vec<u8>)> = got.clone();
    per.sort();
    per.dedup();
    assert_eq!(per.len(), got.len(), "a node delivered the same broadcast twice");
}

#[test]
fn unicast_frames_reach_only_their_destination() {
    let mut sim = Sim::new(SimConfig::new(30, 3));
    sim.converge(5_000).expect("converged");
    sim.delivered.borrow_mut().clear();
    for k in 0..10u8 {
        assert!(sim.send_frame(3, node_mac(17), &[k; 100]));
    }
    sim.settle(500);
    let got = sim.delivered.borrow();
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|(at, f)| *at == 17 && f[..6] == node_mac(17).0));
}

#[test]
fn a_crashed_node_is_routed_around() {
    let mut sim = Sim::new(SimConfig::new(40, 11));
    sim.converge(5_000).expect("converged");
    // crash the best-connected node whose loss keeps the mesh connected
    let mut order: Vec<usize> = (0..40).collect();
    order.sort_by_key(|i| std::cmp::Reverse(sim.neighbours(*i).len()));
    let victim = order
        .into_iter()
        .find(|&v| {
            let mut probe = Sim::new(SimConfig::new(40, 11));
            probe.crash(v);
            probe.connected()
        })
        .expect("some node can go");
    sim.crash(victim);
    // neighbours withdrew their routes and announced at once; within one
    // announce interval every pair of live nodes reaches each other again
    sim.settle(sim.cfg.announce_interval + 500);
    assert_eq!(sim.reachability(10_000), (39 * 38, 39 * 38));
}

#[test]
fn floods_never_amplify() {
    let mut sim = Sim::new(SimConfig::new(50, 5));
    sim.converge(5_000).expect("converged");
    let (m0, t0) = (sim.control_msgs, sim.now());
    sim.settle(30_000);
    let msgs = sim.control_msgs - m0;
    let secs = (sim.now() - t0) as f64 / 1000.0;
    // each announcement crosses each link at most once in each direction
    let announcements = 50.0 * secs / (sim.cfg.announce_interval as f64 / 1000.0);
    let bound = announcements * 2.0 * sim.edges() as f64 * 1.1;
    assert!((msgs as f64) <= bound, "{msgs} messages > {bound}");
    // and every link carries each announcement at least once
    assert!((msgs as f64) >= announcements * sim.edges() as f64 * 0.9);
}
