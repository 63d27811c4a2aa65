//! Real meshes in network namespaces: TAPs, TLS over veth links, IPv4 and
//! IPv6 across one and two hops, and certificates that must be refused.

mod common;

use std::process::Command;

use common::*;
use invpn::pki::{self, KeyType, Validity};

#[test]
fn two_nodes_ping_over_ipv4_and_ipv6() {
    if !root_or_skip("two_nodes_ping_over_ipv4_and_ipv6") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(2);
    lab.link(0, 1, 1);
    let a = Node::start(
        &lab,
        0,
        &pki,
        NodeConf { bind: Some("198.18.1.1".into()), ..NodeConf::new(1, mac(1)) },
    );
    let b = Node::start(
        &lab,
        1,
        &pki,
        NodeConf { init: vec![seed(1, "198.18.1.1")], ..NodeConf::new(2, mac(2)) },
    );
    assert!(a.wait_log(10, "link up: peer=02:50:56:00:00:02"), "A never linked");
    assert!(b.wait_log(10, "proto=invpnd"), "B never linked over invpnd ALPN");
    assert!(wait_until(15, || lab.ping(0, "198.19.0.2")), "IPv4 A->B");
    assert!(wait_until(15, || lab.ping(1, "198.19.0.1")), "IPv4 B->A");
    assert!(
        wait_until(15, || lab.ping(0, "fd00::2")),
        "IPv6 A->B (neighbour discovery over multicast)"
    );
    assert!(wait_until(15, || lab.ping(1, "fd00::1")), "IPv6 B->A");
    // the TAP carries the certificate's MAC
    let link = run("ip", &["-n", lab.ns(0), "link", "show", "inv1"]);
    assert!(link.contains("02:50:56:00:00:01") && link.contains(",UP"), "{link}");
}

#[test]
fn chain_carries_traffic_between_nodes_that_cannot_reach_each_other() {
    if !root_or_skip("chain_carries_traffic_between_nodes_that_cannot_reach_each_other") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(3);
    lab.link(0, 1, 1); // A .1 - B .2 on 198.18.1.0/24
    lab.link(1, 2, 2); // B .2 - C .3 on 198.18.2.0/24
    let b = Node::start(&lab, 1, &pki, NodeConf::new(2, mac(2)));
    let a = Node::start(
        &lab,
        0,
        &pki,
        NodeConf { init: vec![seed(2, "198.18.1.2")], ..NodeConf::new(1, mac(1)) },
    );
    let c = Node::start(
        &lab,
        2,
        &pki,
        NodeConf { init: vec![seed(2, "198.18.2.2")], ..NodeConf::new(3, mac(3)) },
    );
    assert!(
        !lab.exec_ok(0, &["ping", "-c", "1", "-W", "1", "198.18.2.3"]),
        "A must not reach C's underlay"
    );
    assert!(b.wait_log(10, "peer=02:50:56:00:00:01") && b.wait_log(10, "peer=02:50:56:00:00:03"));
    assert!(wait_until(20, || lab.ping(0, "198.19.0.3")), "IPv4 A->C through B");
    assert!(wait_until(20, || lab.ping(2, "198.19.0.1")), "IPv4 C->A through B");
    assert!(wait_until(20, || lab.ping(0, "fd00::3")), "IPv6 A->C through B");
    // A learnt C's address from B's relay, tried it, and could not link:
    // the path stays through B.
    assert!(a.log_text().contains("link up: peer=02:50:56:00:00:02"));
    assert!(!a.log_text().contains("link up: peer=02:50:56:00:00:03"));
    drop(c);
}

/// Connects to `addr` from namespace `ns` with openssl, presenting `cert`.
fn tls_client(
    lab: &Lab,
    ns: usize,
    addr: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
) {
    let _ = Command::new("timeout")
        .args([
            "5",
            "ip",
            "netns",
            "exec",
            lab.ns(ns),
            "openssl",
            "s_client",
            "-connect",
            addr,
            "-quiet",
        ])
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .arg("-CAfile")
        .arg(ca)
        .stdin(std::process::Stdio::null())
        .output();
}

#[test]
fn refuses_foreign_ca_non_mac_cn_and_expired_certificates() {
    if !root_or_skip("refuses_foreign_ca_non_mac_cn_and_expired_certificates") {
        return;
    }
    let pki = Pki::new();
    let other = Pki::new();
    let mut lab = Lab::new(2);
    lab.link(0, 1, 1);
    let a = Node::start(
        &lab,
        0,
        &pki,
        NodeConf { bind: Some("198.18.1.1".into()), ..NodeConf::new(1, mac(1)) },
    );
    assert!(a.wait_log(10, "started: mac=02:50:56:00:00:01"));

    // 1. a real invpnd node whose certificate comes from another CA (it
    //    trusts both CAs, so only A's check can stop it)
    let x_cert = other.node("x", mac(9));
    let both = pki.path("both.crt");
    std::fs::write(&both, format!("{}{}", pki.ca.cert_pem, other.ca.cert_pem)).unwrap();
    let mut xc = NodeConf::new(9, mac(9));
    xc.cert = Some(x_cert);
    xc.ca = Some(both);
    xc.init = vec![seed(1, "198.18.1.1")];
    let mut x = Node::start(&lab, 1, &pki, xc);
    assert!(
        a.wait_log(15, "failed: certificate not signed by the network's CA"),
        "A did not refuse the foreign node"
    );
    assert!(!lab.ping(1, "198.19.0.1"));
    assert!(!a.log_text().contains("link up"));
    x.stop();

    // 2. CN that is not a MAC, 3. expired: presented by openssl
    let named =
        pki::issue(&pki.ca, "node1", Validity::days_from_now(10), KeyType::EcdsaP256).unwrap();
    let (nc, nk) = pki.write("named", &named);
    tls_client(&lab, 1, "198.18.1.1:41744", &nc, &nk, &pki.ca_path());
    assert!(a.wait_log(10, "Common Name \"node1\" is not a MAC address"), "CN not a MAC");

    let t = time::OffsetDateTime::now_utc();
    let old = Validity {
        not_before: t - time::Duration::days(20),
        not_after: t - time::Duration::days(2),
    };
    let expired = pki::issue(&pki.ca, &mac(8).to_string(), old, KeyType::EcdsaP256).unwrap();
    let (ec, ek) = pki.write("expired", &expired);
    tls_client(&lab, 1, "198.18.1.1:41744", &ec, &ek, &pki.ca_path());
    assert!(a.wait_log(10, "failed: certificate expired"), "expired certificate");
    assert!(!a.log_text().contains("link up"));
    // each refusal is one log line naming the peer address
    assert_eq!(
        a.log_count("handshake with 198.18.1.2:"),
        a.log_count("failed:"),
        "{}",
        a.log_text()
    );
}

#[test]
fn dialler_refuses_a_server_with_a_bad_certificate() {
    if !root_or_skip("dialler_refuses_a_server_with_a_bad_certificate") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(2);
    lab.link(0, 1, 1);
    // a TLS server at 198.18.1.2 with an expired certificate for 02:...:02
    let t = time::OffsetDateTime::now_utc();
    let old = Validity {
        not_before: t - time::Duration::days(20),
        not_after: t - time::Duration::days(2),
    };
    let expired = pki::issue(&pki.ca, &mac(2).to_string(), old, KeyType::EcdsaP256).unwrap();
    let (ec, ek) = pki.write("srv", &expired);
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.ns(1),
            "openssl",
            "s_server",
            "-accept",
            "198.18.1.2:41744",
            "-quiet",
            "-naccept",
            "20",
        ])
        .arg("-cert")
        .arg(&ec)
        .arg("-key")
        .arg(&ek)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let a = Node::start(
        &lab,
        0,
        &pki,
        NodeConf { init: vec![seed(2, "198.18.1.2")], ..NodeConf::new(1, mac(1)) },
    );
    let found = a.wait_log(15, "failed: certificate expired");
    let _ = server.kill();
    let _ = server.wait();
    assert!(found, "the dialler accepted an expired server certificate");
    assert!(!a.log_text().contains("link up"));
}
