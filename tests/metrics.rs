//! `invpnctl metrics`, the `[control] metrics` HTTP listener, the health
//! columns of `invpnctl links` and `invpnctl top`, against two real nodes
//! in namespaces. The exposition is read by a real parser: the Python
//! `prometheus_client` package (Debian: python3-prometheus-client, which
//! scripts/ensure-deps.sh installs).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// Parses an exposition (from stdin, or scraped from a URL) with
/// prometheus_client and prints what it read as JSON.
const PARSER: &str = r#"
import json, sys, socket, urllib.request, urllib.error
from prometheus_client.parser import text_string_to_metric_families

def families(text):
    out = []
    for f in text_string_to_metric_families(text):
        out.append({"name": f.name, "type": f.type, "help": f.documentation,
                    "samples": [[s.name, s.labels, s.value] for s in f.samples]})
    return out

def status(url, method):
    try:
        r = urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5)
        return [r.status, r.headers.get("Allow")]
    except urllib.error.HTTPError as e:
        return [e.code, e.headers.get("Allow")]

mode = sys.argv[1]
if mode == "stdin":
    print(json.dumps({"families": families(sys.stdin.read())}))
elif mode == "scrape":
    base = sys.argv[2]
    r = urllib.request.urlopen(base + "/metrics", timeout=5)
    text = r.read().decode()
    print(json.dumps({
        "content_type": r.headers.get("Content-Type"),
        "families": families(text),
        "other_path": status(base + "/", "GET"),
        "post": status(base + "/metrics", "POST"),
        "head": status(base + "/metrics", "HEAD"),
    }))
elif mode == "crowd":
    host, port = sys.argv[2], int(sys.argv[3])
    idle = [socket.create_connection((host, port), timeout=5) for _ in range(16)]
    extra = socket.create_connection((host, port), timeout=5)
    answer = extra.recv(4096).decode(errors="replace")
    for s in idle:
        s.close()
    print(json.dumps({"answer": answer.split("\r\n")[0]}))
elif mode == "abuse":
    host, port = sys.argv[2], int(sys.argv[3])
    big = socket.create_connection((host, port), timeout=10)
    big.sendall(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 9000)
    silent = socket.create_connection((host, port), timeout=10)
    print(json.dumps({
        "big": big.recv(4096).decode(errors="replace").split("\r\n")[0],
        "silent": silent.recv(4096).decode(errors="replace").split("\r\n")[0],
    }))
"#;

/// A python3 that has prometheus_client (Debian's, when another python3
/// comes first in PATH).
fn python() -> String {
    for p in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(p)
            .args(["-c", "import prometheus_client"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p.to_string();
        }
    }
    panic!(
        "the Python prometheus_client package is needed to parse the metrics \
         (apt-get install python3-prometheus-client, or scripts/ensure-deps.sh)"
    );
}

/// Runs the parser script in namespace `ns` (or here, with `input`).
fn parse(py: &str, ns: Option<&str>, args: &[&str], input: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("parse.py");
    std::fs::write(&script, PARSER).unwrap();
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, py]);
            c
        }
        None => Command::new(py),
    };
    let mut child = cmd
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "parser: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Samples by series name, each with its labels, value and family type.
struct Parsed(HashMap<String, Vec<(serde_json::Value, f64, String)>>);

impl Parsed {
    fn new(v: &serde_json::Value) -> Parsed {
        let mut m: HashMap<String, Vec<_>> = HashMap::new();
        for f in v["families"].as_array().unwrap() {
            let kind = f["type"].as_str().unwrap().to_string();
            assert!(kind == "counter" || kind == "gauge", "{}: {kind}", f["name"]);
            assert!(!f["help"].as_str().unwrap().is_empty(), "{}: no help", f["name"]);
            for s in f["samples"].as_array().unwrap() {
                let name = s[0].as_str().unwrap().to_string();
                m.entry(name).or_default().push((
                    s[1].clone(),
                    s[2].as_f64().unwrap(),
                    kind.clone(),
                ));
            }
        }
        Parsed(m)
    }

    /// The value of `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .get(name)?
            .iter()
            .find(|(l, _, _)| labels.iter().all(|(k, v)| l[*k] == *v))
            .map(|s| s.1)
    }

    fn kind(&self, name: &str) -> &str {
        &self.0[name][0].2
    }
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn metrics_links_and_top_of_a_pair() {
    if !root_or_skip("metrics_links_and_top_of_a_pair") {
        return;
    }
    let py = python();
    let pki = Pki::new();
    let conf = NodeConf { extra: "metrics = 127.0.0.1:9561\n".into(), ..NodeConf::new(1, mac(1)) };
    let pair = pair_with(&pki, conf);
    let (a, lab) = (&pair.a, &pair.lab);
    assert!(wait_until(20, || lab.ping(0, "198.19.0.2")));
    assert!(a.wait_log(5, "metrics: serving http://127.0.0.1:9561/metrics"));
    let s = a.socket().to_string_lossy().into_owned();
    let peer = mac(2).to_string();
    let p = [("peer", peer.as_str())];
    // a health sample after the ping (every half second)
    std::thread::sleep(std::time::Duration::from_millis(700));

    // invpnctl metrics, read by the parser
    let (code, text, err) = invpnctl(&["--socket", &s, "metrics"]);
    assert_eq!(code, 0, "{err}");
    let m = Parsed::new(&parse(&py, None, &["stdin"], &text));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.get("invpn_build_info", &[("version", version)]), Some(1.0), "{text}");
    assert_eq!(
        m.get("invpn_node_info", &[("mac", &mac(1).to_string()), ("interface", "inv1")]),
        Some(1.0)
    );
    assert_eq!(m.get("invpn_links", &[]), Some(1.0));
    assert!(m.get("invpn_routes", &[]) >= Some(1.0));
    assert!(m.get("invpn_dedup_sources", &[("kind", "broadcast")]).is_some());
    for reason in invpn::core::stats::DropReason::ALL {
        assert!(
            m.get("invpn_dropped_total", &[("reason", reason.label())]).is_some(),
            "{reason:?}"
        );
    }
    assert_eq!(m.kind("invpn_dropped_total"), "counter");
    assert!(m.get("invpn_tap_read_frames_total", &[]) > Some(0.0));
    assert_eq!(m.kind("invpn_link_rtt_seconds"), "gauge");
    let rtt = m.get("invpn_link_rtt_seconds", &p).unwrap();
    assert!(rtt > 0.0 && rtt < 1.0, "{rtt}");
    assert!(m.get("invpn_link_rtt_deviation_seconds", &p).is_some());
    assert!(m.get("invpn_link_received_bytes_total", &p) > Some(0.0));
    assert!(m.get("invpn_link_sent_messages_total", &p) > Some(0.0));
    assert!(m.get("invpn_link_received_messages_total", &p) > Some(0.0));
    for name in [
        "invpn_link_lane_sent_bytes_total",
        "invpn_link_lane_received_messages_total",
        "invpn_link_queue_delay_seconds",
        "invpn_link_codel_drops_total",
        "invpn_link_ecn_marks_total",
        "invpn_link_inflight_bytes",
    ] {
        assert!(m.get(name, &p).is_some(), "{name}");
    }
    let heard = m.get("invpn_link_last_receive_timestamp_seconds", &p).unwrap();
    assert!((now() - heard).abs() < 5.0, "{heard}");
    // the test certificates are valid for 30 days
    let month = now() + 30.0 * 86_400.0;
    let expiry = m.get("invpn_peer_certificate_expiry_timestamp_seconds", &p).unwrap();
    assert!((expiry - month).abs() < 2.0 * 86_400.0, "{expiry}");
    let own = m.get("invpn_certificate_expiry_timestamp_seconds", &[]).unwrap();
    assert!((own - month).abs() < 2.0 * 86_400.0, "{own}");
    assert!(m.0.contains_key("invpn_ca_certificate_expiry_timestamp_seconds"));
    assert_eq!(
        m.get("invpn_link_info", &[("peer", &peer), ("direction", "in"), ("protocol", "invpnd")]),
        Some(1.0)
    );

    // --out writes the same text to a file, whole, and leaves nothing else
    let d = tempfile::tempdir().unwrap();
    let prom = d.path().join("invpn.prom");
    std::fs::write(&prom, "old").unwrap();
    let (code, _, err) = invpnctl(&["--socket", &s, "metrics", "--out", prom.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(&prom).unwrap();
    let f = Parsed::new(&parse(&py, None, &["stdin"], &written));
    assert_eq!(f.get("invpn_build_info", &[("version", version)]), Some(1.0));
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    let (code, _, err) = invpnctl(&["--socket", &s, "metrics", "--out", "/nonexistent/dir/x.prom"]);
    assert!(code == 1 && err.contains("/nonexistent/dir/x.prom"), "{err}");

    // the listener serves the same families, with the right type; other
    // paths and methods are refused
    let v = parse(&py, Some(lab.ns(0)), &["scrape", "http://127.0.0.1:9561"], "");
    assert_eq!(v["content_type"], "text/plain; version=0.0.4; charset=utf-8");
    let h = Parsed::new(&v);
    let mut names: Vec<&String> = m.0.keys().collect();
    let mut scraped: Vec<&String> = h.0.keys().collect();
    names.sort();
    scraped.sort();
    assert_eq!(names, scraped);
    assert_eq!(v["other_path"][0], 404);
    assert_eq!(v["post"], serde_json::json!([405, "GET, HEAD"]));
    assert_eq!(v["head"][0], 200);
    // at most 16 clients at once: the next one is told so
    let v = parse(&py, Some(lab.ns(0)), &["crowd", "127.0.0.1", "9561"], "");
    assert_eq!(v["answer"], "HTTP/1.1 503 Service Unavailable", "{v}");
    let v = parse(&py, Some(lab.ns(0)), &["scrape", "http://127.0.0.1:9561"], "");
    assert_eq!(v["head"][0], 200, "served again once the crowd left");
    // a request too long, and a client that sends nothing for 5 s
    let v = parse(&py, Some(lab.ns(0)), &["abuse", "127.0.0.1", "9561"], "");
    assert_eq!(v["big"], "HTTP/1.1 431 Request Header Fields Too Large", "{v}");
    assert_eq!(v["silent"], "HTTP/1.1 408 Request Timeout", "{v}");

    // links: the health columns, and the same figures in JSON
    let (code, out, err) = invpnctl(&["--socket", &s, "links"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().next().unwrap().contains("RTT")
            && out.contains("HEARD")
            && out.contains("CERT EXPIRES"),
        "{out}"
    );
    let line = out.lines().find(|l| l.starts_with(&peer)).unwrap();
    assert!(line.contains("±") && line.contains(" ms"), "{out}");
    let v = a.query("links");
    let l = &v[0];
    assert!(l["rtt_us"].as_u64() > Some(0), "{v}");
    assert!(l["last_rx_ms"].as_u64() < Some(5_000), "{v}");
    assert!(l["messages_out"].as_u64() > Some(0), "{v}");
    assert_eq!(l["peer_cert_not_after"].as_f64().unwrap(), expiry);

    // top, not on a terminal: frames one after another, -n stops it
    let (code, out, err) = invpnctl(&["--socket", &s, "top", "-n", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("PEER")).count(), 2, "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with(&peer)).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|r| r.contains("B/s") && !r.contains('\x1b')), "{out}");
    assert!(out.lines().any(|l| l.starts_with("total")), "{out}");
    let (code, _, err) = invpnctl(&["--socket", &s, "top", "--count", "0"]);
    assert!(code == 1 && err.contains("--count"), "{err}");
    let (code, _, err) = invpnctl(&["--socket", &s, "top", "--json"]);
    assert!(code == 1 && err.contains("no JSON form"), "{err}");

    // a restart in place binds the same port again at once
    a.signal("USR2");
    let serving = "metrics: serving http://127.0.0.1:9561/metrics";
    assert!(wait_until(15, || a.log_count(serving) == 2), "{}", a.log_text());
    let v = parse(&py, Some(lab.ns(0)), &["scrape", "http://127.0.0.1:9561"], "");
    assert_eq!(v["head"][0], 200);
    assert!(!a.log_text().contains("running without the metrics listener"));

    // a reload moves the listener, and turns it off
    let conf = std::fs::read_to_string(&a.conf).unwrap();
    std::fs::write(&a.conf, conf.replace("127.0.0.1:9561", "127.0.0.1:9562")).unwrap();
    a.signal("HUP");
    assert!(a.wait_log(10, "metrics: serving http://127.0.0.1:9562/metrics"), "{}", a.log_text());
    let v = parse(&py, Some(lab.ns(0)), &["scrape", "http://127.0.0.1:9562"], "");
    assert_eq!(v["head"][0], 200);
    // an address that cannot be bound (the node's own link port) fails
    // the reload, naming the line; the listener stays where it was
    std::fs::write(&a.conf, conf.replace("127.0.0.1:9561", "198.18.1.1:41744")).unwrap();
    a.signal("HUP");
    assert!(a.wait_log(10, "reload failed"), "{}", a.log_text());
    let line = conf.lines().position(|l| l.starts_with("metrics =")).unwrap() + 1;
    let want = format!("invpn.conf:{line}: [control] metrics: cannot listen on 198.18.1.1:41744");
    assert!(a.log_text().contains(&want), "{want}\n{}", a.log_text());
    let v = parse(&py, Some(lab.ns(0)), &["scrape", "http://127.0.0.1:9562"], "");
    assert_eq!(v["head"][0], 200);
    std::fs::write(&a.conf, conf.replace("127.0.0.1:9561", "off")).unwrap();
    a.signal("HUP");
    assert!(a.wait_log(10, "metrics: no longer listening on 127.0.0.1:9562"), "{}", a.log_text());
    assert!(!lab.exec_ok(
        0,
        &[&py, "-c", "import socket; socket.create_connection(('127.0.0.1', 9562), timeout=2)"]
    ));
}

#[test]
fn a_bad_metrics_address_names_its_line() {
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("invpn.conf");
    std::fs::write(
        &conf,
        "[ssl]\nkey = n.key\ncert = n.crt\nca = ca.crt\n[control]\nsocket = s\nmetrics = localhost:9561\n",
    )
    .unwrap();
    let (code, _, err) = invpnd(&["-t", "-c", conf.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("invpn.conf:7: [control] metrics: \"localhost:9561\": expected ADDRESS:PORT"),
        "{err}"
    );
}
