//! `invpnctl reload | restart | log` and revocation (`[ssl] crl`, `ca
//! revoke`) against real nodes in namespaces; the CRL's errors from
//! `invpnd -t` without root.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `invpnctl ARGS` against node `n`'s socket.
fn ctl(n: &Node, args: &[&str]) -> (i32, String, String) {
    let sock = n.socket();
    let mut full = vec!["--socket", s(&sock)];
    full.extend_from_slice(args);
    invpnctl(&full)
}

fn edit(conf: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(conf).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(conf, text.replacen(from, to, 1)).unwrap();
}

/// The line of `conf` that contains `needle` (1-based).
fn line_of(conf: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(conf).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// The peers of a node's links, from `links --json`.
fn peers(n: &Node) -> Vec<String> {
    let v = n.query("links");
    v.as_array()
        .map(|a| a.iter().map(|l| l["peer"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn reload_restart_and_log_level_over_the_control_socket() {
    if !root_or_skip("reload_restart_and_log_level_over_the_control_socket") {
        return;
    }
    let pki = Pki::new();
    let p = pair(&pki);
    let (a, b) = (&p.a, &p.b);
    assert!(wait_until(20, || peers(a) == [mac(2).to_string()]));

    // a good change: applied, and said
    edit(&a.conf, "announce_interval = 1s", "announce_interval = 1s\nmax_links = 50");
    let (code, out, err) = ctl(a, &["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("reload applied:\n"), "{out}");
    assert!(out.contains("  [network] max_links: 50\n"), "{out}");
    assert!(out.contains("TLS material re-read: certificate valid until"), "{out}");
    assert!(!out.contains("link closed"), "{out}");
    // a setting only a restart applies is named
    edit(&a.conf, "max_links = 50", "max_links = 50\nroute_ttl = 90s");
    let (code, out, _) = ctl(a, &["--json", "reload"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["applied"], true);
    assert_eq!(v["restart_needed"], serde_json::json!(["[network] route_ttl"]));
    assert!(a.log_text().contains("need a restart in place to take effect"));

    // a broken one: refused with file:line, the daemon keeps running
    edit(&a.conf, "max_links = 50", "max_links = many");
    let line = line_of(&a.conf, "max_links = many");
    let (code, out, _) = ctl(a, &["reload"]);
    assert_eq!(code, 1, "{out}");
    let want = format!("{}:{line}: [network] max_links: \"many\"", a.conf.display());
    assert!(out.starts_with("reload refused") && out.contains(&want), "{out}");
    assert!(a.wait_log(5, "reload failed, keeping the running configuration"));
    assert_eq!(ctl(a, &["status"]).0, 0);
    assert_eq!(peers(a), [mac(2).to_string()]);
    // and a restart with it is refused too
    let (code, out, _) = ctl(a, &["restart"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("restart refused") && out.contains(&want), "{out}");
    assert_eq!(ctl(a, &["status"]).0, 0);
    edit(&a.conf, "max_links = many", "max_links = 50");

    // the log level: read, set (its effect seen in the log), back to default
    let (code, out, _) = ctl(a, &["log"]);
    assert_eq!((code, out.as_str()), (0, "log level: debug\n"));
    let (code, out, _) = ctl(a, &["log", "--level", "warn"]);
    assert_eq!((code, out.as_str()), (0, "log level: warn (was debug)\n"));
    let before = a.log_count("reloading ");
    assert_eq!(ctl(a, &["reload"]).0, 0);
    assert_eq!(a.log_count("reloading "), before, "an info line at level warn");
    let (code, _, err) = ctl(a, &["log", "--level", "loud"]);
    assert!(code == 1 && err.contains("unknown log level \"loud\""), "{err}");
    let (code, out, _) = ctl(a, &["log", "--level", "default"]);
    assert_eq!((code, out.as_str()), (0, "log level: debug (was warn)\n"));
    assert_eq!(ctl(a, &["reload"]).0, 0);
    assert!(a.wait_log(5, "reloading ") && a.log_count("reloading ") > before);

    // log -f gets the lines as they come
    let sock = a.socket();
    let mut follower = Command::new(env!("CARGO_BIN_EXE_invpnctl"))
        .args(["--socket", s(&sock), "log", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok).take(10_000) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // until the follower is registered, a reload's line may come before
    // it (and other lines, such as lanes coming up, may come first)
    let mut lines = Vec::new();
    for _ in 0..20 {
        assert_eq!(ctl(a, &["reload"]).0, 0);
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(l);
        }
        if lines.iter().any(|l| l.contains(" INFO  reloading ")) {
            break;
        }
    }
    assert!(!lines.is_empty(), "log -f printed nothing");
    assert!(
        lines.iter().any(|l| l.contains(" INFO  reloading ") && l.ends_with("invpn.conf")),
        "{lines:?}"
    );
    let _ = Command::new("kill").arg(follower.id().to_string()).status();
    let _ = follower.wait();
    reader.join().unwrap();

    // restart: answered, then the new process answers; the link comes back
    let (code, out, err) = ctl(a, &["restart"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("restarting in place"), "{out}");
    assert!(out.contains("\n  applying: [network] route_ttl\n"), "{out}");
    assert!(out.contains(&format!("restarted: invpnd {}", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(a.wait_log(10, "restarted in place"));
    assert!(wait_until(20, || peers(a) == [mac(2).to_string()]), "{}", a.log_text());
    assert_eq!(peers(b), [mac(1).to_string()]);
    drop(p);
}

/// invpnctl, copied where an unprivileged user can run it.
fn invpnctl_for_nobody(dir: &Path) -> PathBuf {
    let exe = dir.join("invpnctl");
    std::fs::copy(env!("CARGO_BIN_EXE_invpnctl"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

#[test]
fn commands_that_change_state_need_root_whatever_the_socket_mode() {
    if !root_or_skip("commands_that_change_state_need_root_whatever_the_socket_mode") {
        return;
    }
    let pki = Pki::new();
    let lab = Lab::new(1);
    let a = Node::start(&lab, 0, &pki, NodeConf::new(1, mac(1)));
    assert!(a.wait_log(10, "started"));
    // loosen what the daemon set up: the directory and the socket
    std::fs::set_permissions(a.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(a.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = invpnctl_for_nobody(bin.path());
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .arg("--socket")
            .arg(a.socket())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // questions are answered
    let (code, out, err) = as_nobody(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node:         02:50:56:00:00:01"), "{out}");
    assert_eq!(as_nobody(&["log"]).0, 0);
    // what changes state is refused, saying why
    for args in [vec!["reload"], vec!["restart"], vec!["log", "--level", "trace"]] {
        let (code, _, err) = as_nobody(&args);
        assert_eq!(code, 1, "{args:?}");
        assert!(
            err.contains("permission denied: `")
                && err.contains("needs root")
                && err.contains("you are uid 65534"),
            "{args:?}: {err}"
        );
    }
    assert!(!a.log_text().contains("reloading "));
    assert!(!a.log_text().contains("restart in place asked"));
    // root may
    let (code, out, _) = ctl(&a, &["log", "--level", "info"]);
    assert_eq!((code, out.as_str()), (0, "log level: info (was debug)\n"));
}

/// Writes the CA's key beside its certificate, so that the Pki's directory
/// is a CA directory for `invpnctl ca`.
fn ca_dir(pki: &Pki) -> PathBuf {
    let key = pki.path("ca.key");
    std::fs::write(&key, &pki.ca.key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    pki.dir.path().to_path_buf()
}

/// Node `n` seeded from node 1 at `init`, with `[ssl] crl` appended as a
/// section of its own (a section may be named twice).
fn crl_conf(n: u8, init: &[&str], crl: &Path) -> NodeConf {
    NodeConf {
        init: init.iter().map(|a| seed(1, a)).collect(),
        extra: format!("[ssl]\ncrl = {}\n", crl.display()),
        ..NodeConf::new(n, mac(n))
    }
}

#[test]
fn a_revoked_node_is_cut_off_on_reload_and_refused_afterwards() {
    if !root_or_skip("a_revoked_node_is_cut_off_on_reload_and_refused_afterwards") {
        return;
    }
    let pki = Pki::new();
    let dir = ca_dir(&pki);
    // an empty CRL to start with, shared by every node (as if distributed)
    let (code, out, err) = invpnctl(&["ca", "crl", "--ca-dir", s(&dir)]);
    assert_eq!(code, 0, "{err}");
    let crl = dir.join("crl.pem");
    assert!(out.contains(&format!("CRL written: {} (CRL number 1, 0 revoked", crl.display())));
    let mut lab = Lab::new(3);
    lab.link(0, 1, 1);
    lab.link(0, 2, 2);
    let a = Node::start(&lab, 0, &pki, crl_conf(1, &[], &crl));
    let b = Node::start(&lab, 1, &pki, crl_conf(2, &["198.18.1.1"], &crl));
    let c = Node::start(&lab, 2, &pki, crl_conf(3, &["198.18.2.1"], &crl));
    assert!(a.wait_log(10, "revocation: "), "{}", a.log_text());
    assert!(wait_until(20, || peers(&a).len() == 2), "{:?}", peers(&a));

    // revoke C: the list grows, the CRL is re-signed with the next number
    let c_crt = pki.path("node3.crt");
    let (code, out, err) = invpnctl(&[
        "ca",
        "revoke",
        "--ca-dir",
        s(&dir),
        "--cert",
        s(&c_crt),
        "--reason",
        "keyCompromise",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked: serial ") && out.contains("(CN=02:50:56:00:00:03)"), "{out}");
    assert!(out.contains("(CRL number 2, 1 revoked, next update "), "{out}");
    // cert verify reads the CRL it made; so does OpenSSL
    let (code, out, _) =
        invpnctl(&["cert", "verify", s(&c_crt), "--ca", s(&pki.ca_path()), "--crl", s(&crl)]);
    assert!(code == 1 && out.contains("revoked: "), "{out}");
    let b_crt = pki.path("node2.crt");
    let (code, _, _) =
        invpnctl(&["cert", "verify", s(&b_crt), "--ca", s(&pki.ca_path()), "--crl", s(&crl)]);
    assert_eq!(code, 0);
    if Command::new("openssl").arg("version").output().is_ok() {
        let out = Command::new("openssl")
            .args([
                "verify",
                "-crl_check",
                "-CAfile",
                s(&pki.ca_path()),
                "-CRLfile",
                s(&crl),
                s(&c_crt),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && text.contains("revoked"), "{text}");
        openssl(
            &dir,
            &["verify", "-crl_check", "-CAfile", "ca.crt", "-CRLfile", "crl.pem", "node2.crt"],
        );
    }

    // A reloads: its link to C closes at once, and says why
    let (code, out, err) = ctl(&a, &["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[ssl] crl: ") && out.contains("1 revoked by"), "{out}");
    assert!(
        out.contains(
            "link closed: 02:50:56:00:00:03: peer certificate no longer valid: certificate revoked"
        ),
        "{out}"
    );
    assert!(wait_until(5, || peers(&a) == [mac(2).to_string()]), "{:?}", peers(&a));
    // and no handshake with C succeeds afterwards, either way round (C
    // keeps its old CRL: only A reloaded)
    let refused = |n: &Node, what: &str| {
        n.log_text().lines().any(|l| l.contains(what) && l.contains("certificate revoked"))
    };
    // C dials A again: A refuses C's client certificate
    assert!(wait_until(15, || refused(&a, "handshake with ")), "{}", a.log_text());
    // C still accepts A (its CRL is old), but A refuses C's server
    // certificate when it dials C
    assert!(wait_until(15, || refused(&a, "cannot link to 02:50:56:00:00:03")), "{}", a.log_text());
    assert_eq!(peers(&a), [mac(2).to_string()]);
    assert!(peers(&c).is_empty(), "{:?}", peers(&c));
    assert_eq!(peers(&b), [mac(1).to_string()]);

    // a CRL that does not load: the reload is refused, naming the line,
    // and nothing changes
    let good = std::fs::read(&crl).unwrap();
    std::fs::write(&crl, b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
        .unwrap();
    let (code, out, _) = ctl(&b, &["reload"]);
    let line = line_of(&b.conf, "crl = ");
    let want = format!("{}:{line}: [ssl] crl: {}: ", b.conf.display(), crl.display());
    assert!(code == 1 && out.contains(&want), "{out}");
    assert_eq!(peers(&b), [mac(1).to_string()]);
    std::fs::write(&crl, good).unwrap();

    // C's own daemon refuses to start with the new CRL, naming the line
    let (code, _, err) = invpnd(&["-t", "-c", s(&c.conf)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("[ssl] crl: ")
            && err.contains("node3.crt: this node's certificate is revoked"),
        "{err}"
    );
    let (code, out, _) = invpnd(&["-t", "-c", s(&b.conf)]);
    assert_eq!(code, 0);
    assert!(out.contains("revocation:      ") && out.contains("1 revoked by CN="), "{out}");
}

#[test]
fn crl_problems_are_clear_errors_from_check_mode() {
    let pki = Pki::new();
    let dir = ca_dir(&pki);
    let (crt, key) = pki.node("n", mac(1));
    let conf = dir.join("invpn.conf");
    let write = |crl: &str| {
        std::fs::write(
            &conf,
            format!(
                "[ssl]\nkey = {}\ncert = {}\nca = {}\ncrl = {crl}\n[network]\ncache = cache\n",
                key.display(),
                crt.display(),
                pki.ca_path().display()
            ),
        )
        .unwrap();
    };
    let check = |crl: &str| {
        write(crl);
        invpnd(&["-t", "-c", s(&conf)])
    };
    let prefix = format!("invpnd: {}:5: [ssl] crl: ", conf.display());
    // missing, not a CRL, from another CA, truncated
    let (code, _, err) = check("missing.crl");
    assert_eq!(code, 1);
    assert!(err.starts_with(&prefix) && err.contains("missing.crl: cannot read"), "{err}");
    let (_, _, err) = check(s(&crt));
    assert!(err.starts_with(&prefix) && err.contains("no X509 CRL in this file"), "{err}");
    let other = tempfile::tempdir().unwrap();
    assert_eq!(invpnctl(&["ca", "new", "--dir", s(&other.path().join("ca"))]).0, 0);
    assert_eq!(invpnctl(&["ca", "crl", "--ca-dir", s(&other.path().join("ca"))]).0, 0);
    let (_, _, err) = check(s(&other.path().join("ca/crl.pem")));
    assert!(err.starts_with(&prefix) && err.contains("not by the network's CA"), "{err}");
    assert_eq!(invpnctl(&["ca", "crl", "--ca-dir", s(&dir), "--days", "30"]).0, 0);
    let good = std::fs::read_to_string(dir.join("crl.pem")).unwrap();
    std::fs::write(dir.join("cut.pem"), &good[..good.len() / 2]).unwrap();
    let (code, _, err) = check("cut.pem");
    assert!(code == 1 && err.starts_with(&prefix), "{err}");
    // a good one: what it says
    let (code, out, err) = check("crl.pem");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revocation:      ") && out.contains("0 revoked by CN=test CA"), "{out}");
    assert!(out.contains("(CRL number 1)"), "{out}");
    // revoking by serial, twice: listed once
    let (_, out, _) = invpnctl(&["--json", "cert", "show", s(&crt)]);
    let serial = serde_json::from_str::<serde_json::Value>(&out).unwrap()["certificates"][0]
        ["serial"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        let (code, _, err) =
            invpnctl(&["ca", "revoke", "--ca-dir", s(&dir), "--serial", &serial.replace(':', "")]);
        assert_eq!(code, 0, "{err}");
    }
    let list = std::fs::read_to_string(dir.join("revoked.txt")).unwrap();
    assert_eq!(list.matches(&serial).count(), 1, "{list}");
    assert_eq!(std::fs::read_to_string(dir.join("crlnumber")).unwrap(), "04\n");
    // the node's own certificate is revoked now: -t says so
    let (code, _, err) = check("crl.pem");
    assert!(code == 1 && err.contains("this node's certificate is revoked"), "{err}");
    // revoke needs something to revoke; a certificate of another CA is refused
    let (code, _, err) = invpnctl(&["ca", "revoke", "--ca-dir", s(&dir)]);
    assert!(code == 1 && err.contains("--cert FILE or --serial HEX"), "{err}");
    let (code, _, err) = invpnctl(&[
        "ca",
        "revoke",
        "--ca-dir",
        s(&dir),
        "--cert",
        s(&other.path().join("ca/ca.crt")),
    ]);
    assert!(code == 1 && err.contains("not issued by this CA"), "{err}");
}
