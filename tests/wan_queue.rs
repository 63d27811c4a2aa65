//! Over an emulated slow WAN (20 Mbit/s, 10 ms each way, a deep 200 ms
//! drop-tail buffer), an interactive flow keeps a low round trip through
//! invpnd while a bulk transfer saturates the link: the link's queue is
//! managed by time (CoDel) and by flow (a ping does not wait behind the
//! bulk flow). The bounds are generous; BENCHMARKS.md carries the figures.

mod common;

use std::process::{Command, Stdio};

use common::wan::{emulator_or_skip, Wan, WanSpec};
use common::*;

/// Every RTT a `ping` printed, in ms.
fn rtts(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.trim_end_matches(" ms").trim().parse().ok())
        .collect()
}

fn percentile(v: &[f64], p: usize) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[(s.len() - 1) * p / 100]
}

#[test]
fn ping_stays_fast_while_a_bulk_transfer_fills_a_slow_link() {
    let test = "wan_queue::ping_stays_fast_while_a_bulk_transfer_fills_a_slow_link";
    if !root_or_skip(test) {
        return;
    }
    let Some(bin) = emulator_or_skip(test) else { return };
    if Command::new("iperf3").arg("--version").output().is_err() {
        assert!(std::env::var("INVPN_REQUIRE_ROOT").as_deref() != Ok("1"), "{test}: needs iperf3");
        eprintln!("SKIPPED {test}: needs iperf3");
        return;
    }
    let pki = Pki::new();
    let lab = Lab::new(2);
    let wan = Wan::link(
        &lab,
        0,
        1,
        1,
        &bin,
        WanSpec { queue_ms: 200.0, ..WanSpec::new(10.0, 0.0, 20.0) },
    );
    let b = Node::start(
        &lab,
        1,
        &pki,
        NodeConf { bind: Some("198.18.1.2".into()), ..NodeConf::new(2, mac(2)) },
    );
    let a = Node::start(
        &lab,
        0,
        &pki,
        NodeConf { init: vec![seed(2, "198.18.1.2")], ..NodeConf::new(1, mac(1)) },
    );
    assert!(wait_until(20, || lab.ping(0, "198.19.0.2")), "no ping across the mesh");

    // idle: the path's own round trip
    let idle = run(
        "ip",
        &["netns", "exec", lab.ns(0), "ping", "-c", "5", "-i", "0.2", "-W", "2", "198.19.0.2"],
    );
    let base = percentile(&rtts(&idle), 50);
    assert!((20.0..40.0).contains(&base), "idle round trip {base} ms:\n{idle}");

    // bulk: four TCP streams from A to B for 12 s, through the tunnel
    let server = Iperf3Server::start(&lab, 1, 5202);
    let client = Command::new("timeout")
        .args(["30", "ip", "netns", "exec", lab.ns(0), "iperf3", "-c", "198.19.0.2"])
        .args(["-p", "5202", "-t", "12", "-P", "4", "-J", "--connect-timeout", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // from 4 s in (the queue has had time to fill), 60 pings 0.1 s apart
    std::thread::sleep(std::time::Duration::from_secs(4));
    let loaded = run(
        "ip",
        &["netns", "exec", lab.ns(0), "ping", "-c", "60", "-i", "0.1", "-W", "2", "198.19.0.2"],
    );
    let out = client.wait_with_output().unwrap();
    drop(server);
    let mbit = iperf3_mbit(&out.stdout);

    let got = rtts(&loaded);
    assert!(got.len() >= 50, "pings lost under load ({} of 60):\n{loaded}", got.len());
    let (median, p90) = (percentile(&got, 50), percentile(&got, 90));
    eprintln!(
        "{test}: idle {base:.1} ms; under load median {median:.1} ms, 90th {p90:.1} ms; \
         bulk {mbit:.1} Mbit/s"
    );
    // the bulk transfer did fill the link...
    assert!(mbit > 8.0, "bulk transfer only {mbit:.1} Mbit/s: the link was not saturated");
    // ...and the ping did not wait behind it: a drop-tail queue of this
    // depth adds up to 200 ms, a queue of bytes in invpnd more
    assert!(median < base + 40.0, "median {median:.1} ms under load, idle {base:.1} ms");
    assert!(p90 < base + 80.0, "90th percentile {p90:.1} ms under load, idle {base:.1} ms");

    // CoDel acted on A's link to B: frames dropped or marked by sojourn
    let links = a.query("links");
    let to_b = links
        .as_array()
        .and_then(|l| l.iter().find(|l| l["peer"] == "02:50:56:00:00:02"))
        .cloned()
        .unwrap_or_default();
    let signals =
        to_b["codel_drops"].as_u64().unwrap_or(0) + to_b["ecn_marks"].as_u64().unwrap_or(0);
    assert!(signals > 0, "no CoDel drop or mark on the saturated link: {to_b}");
    drop(wan);
    drop(b);
}
