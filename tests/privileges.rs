//! invpnd drops privileges after setup (`[daemon] user`, issue 12): it
//! runs as the user with CAP_NET_ADMIN only, the mesh works, and a reload
//! and a restart in place keep working, as the user.

mod common;

use common::*;

/// (uid, gid, CapEff, CapAmb) of a process, from /proc.
fn creds(pid: u32) -> (u32, u32, String, String) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().skip(1).map(String::from).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let first = |name: &str| field(name).first().and_then(|v| v.parse().ok()).unwrap_or(u32::MAX);
    (first("Uid:"), first("Gid:"), field("CapEff:").concat(), field("CapAmb:").concat())
}

/// Every thread's effective capabilities.
fn thread_caps(pid: u32) -> Vec<String> {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|t| {
                    let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                    s.lines()
                        .find(|l| l.starts_with("CapEff:"))
                        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

const NET_ADMIN: &str = "0000000000001000";

#[test]
fn the_daemon_runs_as_its_user_with_net_admin_only() {
    if !root_or_skip("the_daemon_runs_as_its_user_with_net_admin_only") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(2);
    lab.switch(&[0, 1], 1);
    let a = Node::start(&lab, 0, &pki, NodeConf::new(1, mac(1)));
    let mut b = Node::start(
        &lab,
        1,
        &pki,
        NodeConf {
            init: vec![seed(1, "198.18.1.1")],
            user: Some("nobody".into()),
            ..NodeConf::new(2, mac(2))
        },
    );
    assert!(wait_until(15, || lab.ping(1, "198.19.0.1")), "{}", b.log_text());
    assert!(b.wait_log(5, "running as user nobody (uid 65534)"), "{}", b.log_text());
    let (uid, gid, eff, amb) = creds(b.pid());
    assert_eq!((uid, gid), (65534, 65534), "{}", b.log_text());
    assert_eq!(eff, NET_ADMIN, "effective capabilities");
    assert_eq!(amb, NET_ADMIN, "ambient capabilities (kept across a restart)");
    // the workers and TAP threads keep nothing at all
    let caps = thread_caps(b.pid());
    assert!(caps.len() > 2, "{caps:?}");
    assert!(caps.iter().all(|c| c == NET_ADMIN || c == "0000000000000000"), "{caps:?}");
    assert_eq!(caps.iter().filter(|c| *c == NET_ADMIN).count(), 1, "{caps:?}");
    // the control socket answers root, and is the user's
    assert_eq!(b.query("status")["mac"], mac(2).to_string());

    // a reload reads the files again, as the user
    b.signal("HUP");
    assert!(b.wait_log(10, "reload"), "{}", b.log_text());
    assert!(!b.log_text().contains("Permission denied"), "{}", b.log_text());

    // a restart in place: same interface, still the user, the mesh back
    let pid = b.pid();
    b.signal("USR2");
    assert!(b.wait_log(15, "restarted in place"), "{}", b.log_text());
    assert_eq!(b.pid(), pid, "a restart in place keeps the process");
    assert!(wait_until(15, || lab.ping(1, "198.19.0.1")), "{}", b.log_text());
    let (uid, _, eff, _) = creds(b.pid());
    assert_eq!((uid, eff.as_str()), (65534, NET_ADMIN), "{}", b.log_text());
    assert_eq!(b.query("status")["mac"], mac(2).to_string(), "control socket after restart");
    assert!(b.stop().is_some());
    drop(a);
}

#[test]
fn t_names_what_the_user_cannot_read_and_unknown_users() {
    if !root_or_skip("t_names_what_the_user_cannot_read_and_unknown_users") {
        return;
    }
    let pki = Pki::new();
    let (cert, key) = pki.node("n1", mac(1));
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("invpn.conf");
    let write = |daemon: &str| {
        std::fs::write(
            &conf,
            format!(
                "[ssl]\nkey = {}\ncert = {}\nca = {}\n[network]\ncache = {}\n[daemon]\n{daemon}",
                key.display(),
                cert.display(),
                pki.ca_path().display(),
                dir.path().join("cache").display()
            ),
        )
        .unwrap();
    };
    let c = conf.to_str().unwrap();
    write("user = no-such-user-here\n");
    let (rc, _, err) = invpnd(&["-t", "-c", c]);
    assert_ne!(rc, 0);
    assert!(
        err.contains("invpn.conf:8: [daemon] user: \"no-such-user-here\": no such user"),
        "{err}"
    );
    // a key only root may read, a cache directory only root may write
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    write("user = nobody\n");
    let (rc, _, err) = invpnd(&["-t", "-c", c]);
    assert_ne!(rc, 0);
    assert!(err.contains("[ssl] key: ") && err.contains("not readable by user nobody"), "{err}");
    assert!(
        err.contains("[network] cache: ") && err.contains("not writable by user nobody"),
        "{err}"
    );
    write("user = root\n");
    let (rc, out, err) = invpnd(&["-t", "-c", c]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("runs as:         root ([daemon] user)"), "{out}");
}
