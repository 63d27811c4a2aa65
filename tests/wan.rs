//! The emulated-WAN test helper ([`common::wan::Wan`]) does what it says:
//! a 10 ms one-way delay shows as a 20-40 ms ping, and a 20 Mbit/s link
//! carries 10-25 Mbit/s of TCP.

mod common;

use std::process::Command;

use common::wan::{emulator_or_skip, Wan, WanSpec};
use common::*;

/// min and max of `ping -q` output's rtt line, in ms.
fn rtt_min_max(out: &str) -> Option<(f64, f64)> {
    let line = out.lines().find(|l| l.starts_with("rtt ") || l.starts_with("round-trip"))?;
    let v: Vec<f64> = line
        .split('=')
        .nth(1)?
        .trim()
        .split('/')
        .filter_map(|x| x.trim_end_matches(" ms").parse().ok())
        .collect();
    Some((*v.first()?, *v.get(2)?))
}

#[test]
fn an_emulated_link_delays_and_limits_the_rate() {
    let test = "wan::an_emulated_link_delays_and_limits_the_rate";
    if !root_or_skip(test) {
        return;
    }
    let Some(bin) = emulator_or_skip(test) else { return };
    let lab = Lab::new(2);
    let wan = Wan::link(&lab, 0, 1, 1, &bin, WanSpec::new(10.0, 0.0, 20.0));

    // the first ping also resolves the neighbour (one more round trip)
    assert!(wait_until(5, || lab.ping(0, "198.18.1.2")), "no ping across the WAN");
    let ping = run(
        "ip",
        &[
            "netns",
            "exec",
            lab.ns(0),
            "ping",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "2",
            "-q",
            "198.18.1.2",
        ],
    );
    let (min, max) = rtt_min_max(&ping).unwrap_or_else(|| panic!("no rtt in {ping}"));
    eprintln!("{test}: ping {min}-{max} ms");
    assert!(min >= 20.0 && max < 40.0, "a 20 ms RTT path pinged {min}-{max} ms");

    if Command::new("iperf3").arg("--version").output().is_err() {
        eprintln!("{test}: no iperf3, rate not checked");
        return;
    }
    let server = Iperf3Server::start(&lab, 1, 5201);
    let client = Command::new("timeout")
        .args(["20", "ip", "netns", "exec", lab.ns(0), "iperf3", "-c", "198.18.1.2"])
        .args(["-p", "5201", "-t", "4", "-J", "--connect-timeout", "3000"])
        .output()
        .unwrap();
    drop(server);
    let mbit = iperf3_mbit(&client.stdout);
    eprintln!("{test}: iperf3 {mbit:.1} Mbit/s");
    assert!((10.0..=25.0).contains(&mbit), "a 20 Mbit/s link carried {mbit:.1} Mbit/s");
    drop(wan);
}
