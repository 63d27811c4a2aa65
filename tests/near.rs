//! Nearer neighbours (`[network] near_links`): a node with its fill of links
//! probes a node it is not linked to, and closes the probe unused when it is
//! no nearer than its links (on one switch, none is). The simulator
//! (`mesh_sim --near`) measures what probes gain on an underlay with
//! distances; this checks the daemon's side of it: the probe's round trip
//! is read, the probe is dialled and closed, and the mesh is untouched.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_probe_no_nearer_than_the_links_is_closed_unused() {
    let test = "near::a_probe_no_nearer_than_the_links_is_closed_unused";
    if !root_or_skip(test) {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(6);
    lab.switch(&[0, 1, 2, 3, 4, 5], 1);
    // five nodes that dial nobody and keep every link
    let others: Vec<Node> = (1..6)
        .map(|i| {
            let n = i as u8 + 1;
            let node = Node::start(
                &lab,
                i,
                &pki,
                NodeConf {
                    bind: Some(format!("198.18.1.{}", i + 1)),
                    network_extra: vec!["max_links = 0".into()],
                    ..NodeConf::new(n, mac(n))
                },
            );
            assert!(node.wait_log(10, " started: "), "node {n} did not start");
            node
        })
        .collect();
    // A dials four of its five seeds, then probes the fifth a second or two
    // after it has its fill
    let a = Node::start(
        &lab,
        0,
        &pki,
        NodeConf {
            bind: Some("198.18.1.1".into()),
            init: (2..7).map(|n| seed(n, &format!("198.18.1.{n}"))).collect(),
            network_extra: vec!["max_links = 4".into()],
            env: vec![(invpn::daemon::supervisor::PROBE_START_VAR.to_string(), "1000".to_string())],
            ..NodeConf::new(1, mac(1))
        },
    );
    assert!(wait_until(15, || a.links_up() == 4), "A has {} links", a.links_up());
    assert!(wait_until(15, || a.closes("probed") >= 1), "no probe closed");
    // the probe never became a link: A keeps its four, none replaced
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.links_up(), 4);
    assert_eq!(a.closes("farther"), 0, "a node on the same switch replaced a link");
    // and A still reaches its neighbours (the fifth node, which it has no
    // room for, has no link at all)
    let links = a.query("links");
    let peers: Vec<u8> = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| (2..7).find(|n| l["peer"] == mac(*n).to_string()))
        .collect();
    assert_eq!(peers.len(), 4, "{links}");
    for n in peers {
        let to = format!("198.19.0.{n}");
        assert!(wait_until(10, || lab.ping(0, &to)), "A cannot reach node {n}");
    }
    drop((a, others));
}
