//! `invpnctl status | links | routes | trace | graph` against real nodes in
//! namespaces, and the control socket's answers to bad requests.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;

use common::*;

#[test]
fn status_links_routes_trace_and_graph_of_a_mesh() {
    if !root_or_skip("status_links_routes_trace_and_graph_of_a_mesh") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(3);
    lab.link(0, 1, 1);
    lab.link(1, 2, 2);
    let b = Node::start(&lab, 1, &pki, NodeConf::new(2, mac(2)));
    let a = Node::start(
        &lab,
        0,
        &pki,
        NodeConf {
            init: vec![seed(2, "198.18.1.2")],
            network_extra: vec!["congestion = reno".into()],
            ..NodeConf::new(1, mac(1))
        },
    );
    let _c = Node::start(
        &lab,
        2,
        &pki,
        NodeConf { init: vec![seed(2, "198.18.2.2")], ..NodeConf::new(3, mac(3)) },
    );
    assert!(wait_until(20, || lab.ping(0, "198.19.0.3")));
    let s = a.socket().to_string_lossy().into_owned();
    assert_eq!(
        std::fs::metadata(&s)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap(),
        0o600
    );

    let (code, out, err) = invpnctl(&["--socket", &s, "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("node:         02:50:56:00:00:01") && out.contains("interface:    inv1"),
        "{out}"
    );
    assert!(out.contains("links:        1   routes: 2"), "{out}");
    assert!(out.contains("congestion:   reno (configured)\n"), "{out}");
    assert!(a.log_text().contains("TCP congestion control: reno (configured)"));
    // the link socket A dialled has it, and its lane if one is up (B's
    // side is B's choice)
    let a_links = ss_congestion(&lab, 0);
    assert!(!a_links.is_empty() && a_links.iter().all(|c| c == "reno"), "{a_links:?}");
    let b_status = b.query("status");
    assert!(
        ["default", "system default; bbr unavailable"]
            .contains(&b_status["congestion_source"].as_str().unwrap()),
        "{b_status}"
    );
    let b_cc = b_status["congestion"].as_str().unwrap().to_string();
    let b_links = ss_congestion(&lab, 1);
    // two links (and their lanes, if up), all accepted by B
    assert!(b_links.len() >= 2 && b_links.iter().all(|c| *c == b_cc), "{b_links:?} {b_cc}");

    let (_, out, _) = invpnctl(&["--socket", &s, "links"]);
    assert!(
        out.contains("02:50:56:00:00:02")
            && out.contains("198.18.1.2:41744")
            && out.contains("out")
            && out.contains("invpnd"),
        "{out}"
    );
    let (_, out, _) = invpnctl(&["--socket", &s, "routes"]);
    assert!(out.lines().any(|l| l.starts_with("02:50:56:00:00:03  02:50:56:00:00:02")), "{out}");

    // -c reads the socket path from the configuration; --json is JSON
    let (code, out, err) = invpnctl(&["-c", a.conf.to_str().unwrap(), "--json", "links"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["peer"], "02:50:56:00:00:02");
    assert_eq!(v[0]["protocol"], "invpnd");
    let v = a.query("status");
    assert_eq!(
        (v["congestion"].as_str(), v["congestion_source"].as_str()),
        (Some("reno"), Some("configured"))
    );

    // a reload applies a new algorithm to new links; one the kernel does
    // not have fails the reload, naming the line
    let conf = std::fs::read_to_string(&a.conf).unwrap();
    std::fs::write(&a.conf, conf.replace("congestion = reno", "congestion = no_such_cc")).unwrap();
    a.signal("HUP");
    assert!(a.wait_log(10, "reload failed"), "{}", a.log_text());
    assert!(a
        .log_text()
        .contains("[network] congestion: the kernel has no TCP congestion control"));
    std::fs::write(&a.conf, conf.replace("congestion = reno", "congestion = cubic")).unwrap();
    a.signal("HUP");
    assert!(a.wait_log(10, "TCP congestion control now cubic (configured) for new links"));
    let (_, out, _) = invpnctl(&["--socket", &s, "status"]);
    assert!(out.contains("congestion:   cubic (configured)\n"), "{out}");

    // trace from A: B and C answer; C's request went through B
    let (code, out, err) = invpnctl(&["--socket", &s, "trace", "--wait", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 node(s) answered") && out.contains("2 link(s) seen"), "{out}");
    assert!(
        out.contains("request path: 02:50:56:00:00:01 -> 02:50:56:00:00:02 -> 02:50:56:00:00:03"),
        "{out}"
    );
    assert!(
        out.contains("answer path:  02:50:56:00:00:03 -> 02:50:56:00:00:02 -> 02:50:56:00:00:01"),
        "{out}"
    );
    let (_, out, _) = invpnctl(&["--socket", &s, "graph", "--wait", "1"]);
    assert!(out.starts_with("graph invpn {"), "{out}");
    assert!(out.contains("\"02:50:56:00:00:01\" -- \"02:50:56:00:00:02\";"));
    assert!(out.contains("\"02:50:56:00:00:02\" -- \"02:50:56:00:00:03\";"));
    assert_eq!(out.matches(" -- ").count(), 2);
    if Command::new("dot").arg("-V").output().is_ok() {
        let mut dot = Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        dot.stdin.take().unwrap().write_all(out.as_bytes()).unwrap();
        let svg = dot.wait_with_output().unwrap();
        assert!(svg.status.success() && String::from_utf8_lossy(&svg.stdout).contains("<svg"));
    }

    // a request the daemon does not know, and one that is not JSON
    for (req, want) in [("{\"cmd\":\"reboot\"}\n", "unknown request"), ("hello\n", "bad request")] {
        let mut c = UnixStream::connect(&s).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], false);
        assert!(v["error"].as_str().unwrap().contains(want), "{line}");
    }
    // a client that closes its sending side still gets its trace
    let mut c = UnixStream::connect(&s).unwrap();
    c.write_all(b"{\"cmd\":\"trace\",\"wait_ms\":300}\n").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut line = String::new();
    BufReader::new(&c).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["ok"], true, "{line}");
    assert_eq!(v["result"]["nodes"].as_array().unwrap().len(), 3);
    // the socket goes away with the daemon
    drop(a);
    assert!(!std::path::Path::new(&s).exists());
}

/// The congestion control of each established TCP connection in
/// namespace `i`, as `ss -ti` shows it.
fn ss_congestion(lab: &Lab, i: usize) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", lab.ns(i), "ss", "-tin", "state", "established"])
        .output()
        .unwrap();
    let known = ["reno", "cubic", "bbr", "bbr2", "bbr3", "htcp", "dctcp", "vegas", "westwood"];
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| known.contains(w))
        .map(str::to_string)
        .collect()
}

#[test]
fn missing_or_silent_daemons_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let none = d.path().join("none.sock");
    let (code, _, err) = invpnctl(&["--socket", none.to_str().unwrap(), "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect to") && err.contains("is invpnd running?"), "{err}");
    // a socket that accepts and never answers
    let silent = d.path().join("silent.sock");
    let l = UnixListener::bind(&silent).unwrap();
    let t = std::thread::spawn(move || {
        let c = l.accept();
        std::thread::sleep(std::time::Duration::from_secs(2));
        drop(c);
    });
    let (code, _, err) =
        invpnctl(&["--socket", silent.to_str().unwrap(), "--timeout", "0.5", "routes"]);
    assert_eq!(code, 1);
    assert!(err.contains("did not answer in time"), "{err}");
    t.join().unwrap();
    for (args, want) in [
        (vec!["trace", "--wait", "0"], "--wait"),
        (vec!["trace", "--wait", "x"], "--wait"),
        (vec!["status", "extra"], "unexpected argument"),
        (vec!["--timeout", "-1", "status"], "--timeout"),
    ] {
        let mut full = vec!["--socket", none.to_str().unwrap()];
        full.extend(args.iter().copied());
        let (code, _, err) = invpnctl(&full);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn a_second_daemon_cannot_take_a_live_control_socket() {
    if !root_or_skip("a_second_daemon_cannot_take_a_live_control_socket") {
        return;
    }
    let pki = Pki::new();
    let lab = Lab::new(2);
    let a = Node::start(&lab, 0, &pki, NodeConf::new(1, mac(1)));
    assert!(a.wait_log(10, "started"));
    // a second node in another namespace, configured with A's socket path
    let mut b =
        Node::start(&lab, 1, &pki, NodeConf { extra: String::new(), ..NodeConf::new(2, mac(2)) });
    b.stop();
    let text = std::fs::read_to_string(&b.conf).unwrap().replace(
        "socket = ctl.sock",
        &format!("socket = {}", a.socket().to_string_lossy().into_owned()),
    );
    std::fs::write(&b.conf, text).unwrap();
    b.spawn(&[]);
    assert_eq!(b.wait_exit(10), Some(1));
    assert!(
        b.log_text().contains("cannot create the control socket")
            && b.log_text().contains("already running"),
        "{}",
        b.log_text()
    );
    // A still answers
    let (code, _, _) = invpnctl(&["--socket", &a.socket().to_string_lossy(), "status"]);
    assert_eq!(code, 0);
    // a regular file where the socket should be is left alone: an error
    let file = b.dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let text = std::fs::read_to_string(&b.conf)
        .unwrap()
        .replace(&a.socket().to_string_lossy().into_owned(), file.to_str().unwrap());
    std::fs::write(&b.conf, text).unwrap();
    b.spawn(&[]);
    assert_eq!(b.wait_exit(10), Some(1));
    assert!(b.log_text().contains("is not a socket"), "{}", b.log_text());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}
