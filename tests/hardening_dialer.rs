//! Issue 12, address poisoning and certificate expiry, in network
//! namespaces: a neighbour with a valid certificate announcing thousands of
//! invented and unusable addresses, and a peer whose certificate expires
//! while its link is up.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use invpn::core::addrs::AddrPolicy;
use invpn::core::wire::{self, AnnouncedAddr};
use invpn::core::Mac;
use invpn::pki::{self, KeyType, Validity};

fn num(v: &serde_json::Value, section: &str, key: &str) -> u64 {
    v[section][key].as_u64().unwrap_or(0)
}

/// Invented node `i` (not in the 02:50:56 range of the lab's nodes).
fn invented(i: u32) -> Mac {
    Mac([2, 0x66, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

/// The address announced for invented node `i`: the last `UNUSABLE` are
/// addresses no node can have (loopback, multicast, unspecified,
/// link-local, broadcast, port 0, the victim's own), the others invented
/// ones in the lab's range that lead nowhere.
fn invented_addr(i: u32) -> (Ipv4Addr, u16) {
    let (hi, lo) = ((i >> 8) as u8, i as u8);
    if i < INVENTED - UNUSABLE {
        return (Ipv4Addr::new(198, 18, 200 + hi % 50, lo), 41744);
    }
    match i % 7 {
        0 => (Ipv4Addr::new(127, 0, hi, lo.max(1)), 41744),
        1 => (Ipv4Addr::new(224, 0, 0, lo), 41744),
        2 => (Ipv4Addr::new(0, 0, 0, 0), 41744),
        3 => (Ipv4Addr::new(169, 254, hi, lo), 41744),
        4 => (Ipv4Addr::new(255, 255, 255, 255), 41744),
        5 => (Ipv4Addr::new(198, 18, 1, 2), 0),
        _ => (Ipv4Addr::new(198, 18, 1, 1), 41744),
    }
}

const UNUSABLE: u32 = 350;
const INVENTED: u32 = 3000;
const SHARE: u64 = 200;

#[test]
fn a_neighbour_announcing_invented_addresses_fills_only_its_share() {
    if !root_or_skip("a_neighbour_announcing_invented_addresses_fills_only_its_share") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(3);
    lab.switch(&[0, 1, 2], 1);
    // A dials B (and B A): A's cache then has B, proved by A's own link
    let mut a = Node::start(
        &lab,
        0,
        &pki,
        NodeConf {
            init: vec![seed(2, "198.18.1.2")],
            extra: format!("[limits]\ndial_targets_per_link = {SHARE}\n"),
            ..NodeConf::new(1, mac(1))
        },
    );
    let b = Node::start(
        &lab,
        1,
        &pki,
        NodeConf { init: vec![seed(1, "198.18.1.1")], ..NodeConf::new(2, mac(2)) },
    );
    assert!(wait_until(15, || lab.ping(0, "198.19.0.2")), "{}", a.log_text());

    // the hostile neighbour has a valid certificate for 02:50:56:00:00:66
    let (hc, hk) = pki.node("hostile", mac(0x66));
    let now = invpn::daemon::clock::unix_ms();
    let mut stream = Vec::new();
    wire::encode_direct_announce(
        &mut stream,
        &wire::DirectAnnounce { version: 1, id: now, mac: mac(0x66), port: 41744 },
    );
    for i in 0..INVENTED {
        let (ip, port) = invented_addr(i);
        let announce = wire::Announce {
            version: 1,
            id: now + u64::from(i),
            mac: invented(i),
            port,
            addr: AnnouncedAddr::V4(ip),
        };
        wire::encode_announce(&mut stream, &announce);
    }
    let input = pki.path("hostile.bin");
    std::fs::write(&input, &stream).unwrap();
    let hostile = Command::new("timeout")
        .args(["8", "ip", "netns", "exec", lab.ns(2), "openssl", "s_client"])
        .args(["-connect", "198.18.1.1:41744", "-quiet", "-cert"])
        .arg(&hc)
        .arg("-key")
        .arg(&hk)
        .arg("-CAfile")
        .arg(pki.ca_path())
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut hostile = hostile.unwrap();
    // 0.0.0.0 and port 0 the engine already takes as "no address": the
    // dialer refuses the others
    let refusable =
        (INVENTED - UNUSABLE..INVENTED).filter(|i| !matches!(i % 7, 2 | 5)).count() as u64;
    assert!(
        wait_until(15, || num(&a.query("status"), "dialer", "refused") >= refusable),
        "unusable addresses not refused: {}",
        a.query("status")
    );
    // time for dials to the invented addresses
    std::thread::sleep(Duration::from_secs(3));
    let _ = hostile.wait();
    let s = a.query("status");
    let d = &s["dialer"];
    eprintln!("dialer after the flood: {d}");
    assert!(d["hearsay_largest_share"].as_u64().unwrap() <= SHARE, "{d}");
    assert!(d["hearsay"].as_u64().unwrap() <= SHARE + 2, "only its share and B's: {d}");
    assert!(d["evicted"].as_u64().unwrap() > 0, "{d}");
    assert!(lab.ping(0, "198.19.0.2"), "the honest neighbour is still reached");

    // nothing refused was dialled; the invented but usable ones were (the
    // check above means something)
    let policy = AddrPolicy::new(&["198.18.1.1:41744".parse().unwrap()], false);
    let log = a.log_text();
    let dialled: Vec<SocketAddr> = log
        .lines()
        .filter(|l| !l.contains("dialling a lane"))
        .filter_map(|l| l.split(" DEBUG dialling ").nth(1))
        .filter_map(|t| t.split_once('@')?.1.split_whitespace().next()?.parse().ok())
        .collect();
    for addr in &dialled {
        assert!(policy.check(*addr).is_ok(), "dialled {addr}, which cannot be a node's");
    }
    assert!(dialled.iter().any(|a| a.ip().to_string().starts_with("198.18.2")), "{dialled:?}");
    assert!(log.contains("not dialling"), "refusals are logged");
    assert!(log.matches("not dialling").count() <= 2, "at most once a minute");
    // B, to which A relayed the flood, takes the invented MACs at A's
    // address (50) as hearsay: it dials A's address once at a time, backing
    // off, not 50 times
    let at_a = b
        .log_text()
        .lines()
        .filter(|l| l.contains(" DEBUG dialling 02:66:") && l.ends_with("@198.18.1.1:41744"))
        .count();
    eprintln!("B dialled A's address for invented MACs {at_a} time(s)");
    assert!(at_a <= 10, "{at_a} dials from B to A's address for invented MACs");

    // the cache has B, proved by A's link, and nothing invented
    assert_eq!(a.stop(), Some(0));
    let text = std::fs::read_to_string(a.dir.path().join("cache")).unwrap();
    let cache = invpn::core::cache::NodeCache::parse(&text).cache;
    let macs: Vec<Mac> = cache.entries().map(|(m, _)| m).collect();
    assert_eq!(macs, vec![mac(2)], "{text}");

    // so a restart starts clean
    a.spawn(&[]);
    assert!(wait_until(15, || lab.ping(0, "198.19.0.2")), "{}", a.log_text());
    let d = a.query("status")["dialer"].clone();
    assert!(d["hearsay"].as_u64().unwrap() <= 2, "{d}");
}

#[test]
fn a_link_closes_when_its_peer_certificate_expires() {
    if !root_or_skip("a_link_closes_when_its_peer_certificate_expires") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(2);
    lab.link(0, 1, 1);
    let a = Node::start(&lab, 0, &pki, NodeConf::new(1, mac(1)));
    // B's certificate is valid for 12 more seconds
    let now = time::OffsetDateTime::now_utc();
    let validity = Validity {
        not_before: now - time::Duration::hours(1),
        not_after: now + time::Duration::seconds(12),
    };
    let short = pki::new_node(&pki.ca, mac(2), validity, KeyType::EcdsaP256).unwrap();
    let b = Node::start(
        &lab,
        1,
        &pki,
        NodeConf {
            init: vec![seed(1, "198.18.1.1")],
            cert: Some(pki.write("short", &short)),
            ..NodeConf::new(2, mac(2))
        },
    );
    assert!(wait_until(10, || lab.ping(1, "198.19.0.1")), "{}", b.log_text());
    assert!(
        b.wait_log(5, "WARN  node certificate CN=02:50:56:00:00:02 expires in 0 day(s)"),
        "{}",
        b.log_text()
    );
    // closed within a few seconds of the expiry, by A (B's own certificate
    // is what expired: it says so once)
    let closed = "link to 02:50:56:00:00:02 closed: peer certificate expired on ";
    assert!(a.wait_log(20, closed), "{}", a.log_text());
    assert!(b.wait_log(5, "node certificate CN=02:50:56:00:00:02 expired on "), "{}", b.log_text());
    assert_eq!(b.log_count("node certificate CN=02:50:56:00:00:02 expired on "), 1);
    let s = a.query("status");
    assert!(num(&s, "closes", "certificate_expired") >= 1, "{s}");
    // and it does not come back: B's handshakes are refused from now on
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.query("links").as_array().map_or(0, Vec::len), 0, "{}", a.log_text());
    assert!(!lab.ping(1, "198.19.0.1"));
}
