//! TCP segmentation offload across the mesh: super-frames between nodes
//! that take them, software segmentation for those that do not, and the
//! bytes arriving intact either way.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn offload(on: bool) -> String {
    format!("[performance]\noffload = {on}\n")
}

/// Sends `bytes` of random data from namespace `from` to `to_addr` over TCP
/// through the overlay and returns whether they arrived unchanged.
fn transfer(lab: &Lab, from: usize, to: usize, to_addr: &str, bytes: usize) -> bool {
    let d = tempfile::tempdir().unwrap();
    let (src, dst) = (d.path().join("in"), d.path().join("out"));
    let mut data = vec![0u8; bytes];
    fastrand::fill(&mut data);
    std::fs::write(&src, &data).unwrap();
    let mut server = Command::new("ip")
        .args(["netns", "exec", lab.ns(to), "socat", "-u"])
        .arg(if to_addr.starts_with('[') {
            "TCP6-LISTEN:5000,reuseaddr"
        } else {
            "TCP4-LISTEN:5000,reuseaddr"
        })
        .arg(format!("OPEN:{},creat,trunc", dst.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = Command::new("timeout")
        .args(["60", "ip", "netns", "exec", lab.ns(from), "socat", "-u"])
        .arg(format!("OPEN:{}", src.display()))
        .arg(format!("TCP:{to_addr}:5000"))
        .status()
        .unwrap()
        .success();
    let _ = common::wait_until(20, || matches!(server.try_wait(), Ok(Some(_))));
    let _ = server.kill();
    let _ = server.wait();
    sent && std::fs::read(&dst).map(|got| got == data).unwrap_or(false)
}

#[test]
fn super_frames_between_offload_nodes_and_segmentation_for_the_others() {
    if !root_or_skip("super_frames_between_offload_nodes_and_segmentation_for_the_others") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(3);
    lab.link(0, 1, 1);
    lab.link(1, 2, 2);
    // A and C segment in their kernels' TAPs; B, in the middle, does not
    let b =
        Node::start(&lab, 1, &pki, NodeConf { extra: offload(false), ..NodeConf::new(2, mac(2)) });
    let a = Node::start(
        &lab,
        0,
        &pki,
        NodeConf {
            init: vec![seed(2, "198.18.1.2")],
            extra: offload(true),
            ..NodeConf::new(1, mac(1))
        },
    );
    let c = Node::start(
        &lab,
        2,
        &pki,
        NodeConf {
            init: vec![seed(2, "198.18.2.2")],
            extra: offload(true),
            ..NodeConf::new(3, mac(3))
        },
    );
    assert!(a.wait_log(10, "offload=tcp-segmentation") && b.wait_log(10, "offload=off"));
    assert!(wait_until(20, || lab.ping(0, "198.19.0.3")));
    // A -> C: super-frames cross B whole (B forwards 0x82 it cannot write)
    assert!(transfer(&lab, 0, 2, "198.19.0.3", 8 << 20), "A -> C corrupted or failed");
    // A -> B: B's TAP takes no super-frames: B segments them in software
    assert!(transfer(&lab, 0, 1, "198.19.0.2", 8 << 20), "A -> B corrupted or failed");
    // B -> C: ordinary frames into an offload TAP
    assert!(transfer(&lab, 1, 2, "198.19.0.3", 4 << 20), "B -> C corrupted or failed");
    // over IPv6 too
    assert!(wait_until(10, || lab.ping(0, "fd00::3")));
    assert!(transfer(&lab, 2, 0, "[fd00::1]", 4 << 20), "C -> A over IPv6 corrupted or failed");
    // the counters say which way the frames went
    let counter = |n: &Node, name: &str| -> u64 {
        let sock = n.dir.path().join("ctl.sock");
        let out = Command::new(env!("CARGO_BIN_EXE_invpnctl"))
            .args(["--socket", sock.to_str().unwrap(), "--json", "status"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["counters"][name].as_u64().unwrap()
    };
    assert!(counter(&c, "offloaded_in") > 100, "C received super-frames");
    assert!(counter(&b, "offloaded_in") > 100, "B forwarded super-frames");
    assert!(counter(&b, "software_segments") > 1000, "B segmented for its own TAP");
    assert_eq!(counter(&a, "software_segments"), 0, "A never had to");
}
