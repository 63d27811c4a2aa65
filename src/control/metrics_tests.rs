//! Tests of the exposition: escaping, value formatting, family structure
//! and names, documentation.

use super::*;

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn status() -> Status {
    serde_json::from_value(serde_json::json!({
        "version": "0.1.0", "mac": "02:50:56:00:00:01", "interface": "invpn0",
        "ifindex": 3, "mtu": 1500, "listen": null, "uptime_secs": 100, "links": 1,
        "routes": 2, "cached_nodes": 0, "workers": 2,
        "counters": {"tap_bytes_in": 1500, "messages_in": 7},
        "drops": {"no_route": 3, "loop": 0},
        "malformed": {"truncated": 1},
        "cert_not_after": 1_900_000_000i64,
        "ca_not_after": {"CN=a \"quoted\" \\ CA\nx": 2_000_000_000i64},
    }))
    .unwrap()
}

fn link(peer: &str) -> LinkEntry {
    serde_json::from_value(serde_json::json!({
        "peer": peer, "addr": "198.18.1.2:41744", "direction": "out",
        "protocol": "invpnd", "uptime_secs": 10, "bytes_in": 1000, "bytes_out": 2000,
        "messages_in": 5, "queued_bytes": 0, "queue_delay_us": 2500, "dropped": 1,
        "codel_drops": 1, "ecn_marks": 0, "malformed": 0, "messages_out": 6,
        "rtt_us": 1250, "rttvar_us": 500, "last_rx_ms": 300, "inflight_bytes": 0,
        "unsent_bytes": 0, "peer_cert_not_after": 1_800_000_000i64
    }))
    .unwrap()
}

#[test]
fn escaping_follows_the_text_format() {
    assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(escape_help("a\"b\\c\nd"), "a\"b\\\\c\\nd");
    let out = render(&status(), &[], 1000.0);
    assert!(
        out.contains(
            "invpn_ca_certificate_expiry_timestamp_seconds{subject=\"CN=a \\\"quoted\\\" \\\\ CA\\nx\"} 2000000000\n"
        ),
        "{out}"
    );
}

#[test]
fn values_are_formatted_for_parsers() {
    assert_eq!(Value::F(0.00125).to_string(), "0.00125");
    assert_eq!(Value::F(1e-7).to_string(), "0.0000001");
    assert_eq!(Value::F(f64::INFINITY).to_string(), "+Inf");
    assert_eq!(Value::F(f64::NEG_INFINITY).to_string(), "-Inf");
    assert_eq!(Value::F(f64::NAN).to_string(), "NaN");
    assert_eq!(Value::I(-3).to_string(), "-3");
    assert_eq!(Value::U(u64::MAX).to_string(), "18446744073709551615");
}

#[test]
fn families_are_typed_named_and_contiguous() {
    let out = render(&status(), &[link("02:50:56:00:00:02"), link("02:50:56:00:00:03")], 1e9);
    let mut families: Vec<(String, String)> = Vec::new();
    let mut current = String::new();
    let mut helped = HashSet::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_string()), "{name}: two HELP lines");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "{name}: TYPE without HELP");
            assert!(valid_name(name), "{name}");
            assert!(name.starts_with("invpn_"), "{name}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name}: {kind}");
            assert!(!families.iter().any(|(n, _)| n == name), "{name} twice");
            families.push((name.to_string(), kind.to_string()));
            current = name.to_string();
        } else {
            let series = line.split([' ', '{']).next().unwrap();
            assert_eq!(series, current, "sample outside its family: {line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    // every traffic counter, every drop reason given, both links
    for c in Counter::ALL {
        let (name, _) = counter_metric(*c);
        assert!(families.iter().any(|(n, _)| n == name), "{name}");
    }
    assert!(out.contains("invpn_tap_read_bytes_total 1500\n"));
    assert!(out.contains("invpn_dropped_total{reason=\"no_route\"} 3\n"));
    assert!(out.contains("invpn_dropped_total{reason=\"loop\"} 0\n"));
    assert!(out.contains("invpn_malformed_messages_total{class=\"truncated\"} 1\n"));
    assert!(out.contains("invpn_build_info{version=\"0.1.0\"} 1\n"));
    assert!(out.contains("invpn_link_rtt_seconds{peer=\"02:50:56:00:00:03\"} 0.00125\n"));
    assert!(out.contains("invpn_link_queue_delay_seconds{peer=\"02:50:56:00:00:02\"} 0.0025\n"));
    assert!(out.contains(
        "invpn_link_last_receive_timestamp_seconds{peer=\"02:50:56:00:00:02\"} 999999999.7\n"
    ));
    assert!(out.contains("invpn_start_time_seconds 999999900\n"));
    assert!(out.contains(
        "invpn_peer_certificate_expiry_timestamp_seconds{peer=\"02:50:56:00:00:02\"} 1800000000\n"
    ));
}

#[test]
fn every_family_is_documented() {
    let man = include_str!("../../man/invpnctl.8");
    let section = man
        .split(".SH METRICS")
        .nth(1)
        .and_then(|s| s.split("\n.SH ").next())
        .expect("a METRICS section");
    let out = render(&status(), &[link("02:50:56:00:00:02")], 1e9);
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                section.contains(&format!("{name} ")) || section.contains(&format!("{name}\n")),
                "{name} is not in invpnctl(8), METRICS"
            );
        }
    }
}

#[test]
fn one_series_per_peer() {
    let mut unknown = link("02:50:56:00:00:02");
    unknown.peer_cert_not_after = 0;
    let out = render(&status(), &[unknown, link("02:50:56:00:00:02")], 1e9);
    assert_eq!(out.matches("invpn_link_sent_bytes_total{").count(), 1);
    // an expiry not known is left out, not given as 0
    assert!(!out.contains("invpn_peer_certificate_expiry_timestamp_seconds{"));
    // timestamps to the millisecond, without binary noise
    let out = render(&status(), &[link("02:50:56:00:00:02")], 1_796_315_637.644);
    assert!(out.contains(
        "invpn_link_last_receive_timestamp_seconds{peer=\"02:50:56:00:00:02\"} 1796315637.344\n"
    ), "{out}");
}

#[test]
fn the_dialer_is_exposed() {
    let mut s = status();
    s.dialer.hearsay = 200;
    s.dialer.refused = 250;
    s.closes.insert("certificate_expired".into(), 1);
    let out = render(&s, &[], 1000.0);
    assert!(out.contains("invpn_dial_targets{kind=\"hearsay\"} 200\n"), "{out}");
    assert!(out.contains("invpn_dial_addresses_total{fate=\"refused\"} 250\n"), "{out}");
    assert!(out.contains("invpn_link_closes_total{cause=\"certificate_expired\"} 1\n"), "{out}");
}
