//! The `up` and `down` programs of [interface] on a real TAP interface
//! (in a network namespace, so root): `down` runs at a stop while the
//! interface still exists, with the same environment as `up`, and not
//! around a restart in place, which keeps the interface; and when the
//! daemon stops on a fatal error.

mod common;

use common::*;

#[test]
fn down_runs_at_stop_and_not_around_a_restart_in_place() {
    if !root_or_skip("down_runs_at_stop_and_not_around_a_restart_in_place") {
        return;
    }
    let pki = Pki::new();
    let lab = Lab::new(1);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("down.log");
    // the interface must still be there for the program to clean up after it
    let down = recorder(dir.path(), &record);
    let mut node = Node::start(
        &lab,
        0,
        &pki,
        NodeConf {
            extra: format!("[interface]\nmtu = 1400\ndown = {}\n", down.display()),
            ..NodeConf::new(1, mac(1))
        },
    );
    assert!(node.wait_log(10, "up program"), "{}", node.log_text());
    let (_, check, _) = invpnd(&["-t", "-c", node.conf.to_str().unwrap()]);
    assert!(check.contains(&format!("down program {}", down.display())), "{check}");

    node.signal("USR2");
    assert!(node.wait_log(10, "restarted in place"), "{}", node.log_text());
    assert!(!record.exists(), "down ran around a restart in place");
    assert_eq!(node.log_count("up program"), 1);

    assert_eq!(node.stop(), Some(0));
    let line = std::fs::read_to_string(&record).unwrap_or_default();
    assert_eq!(
        line,
        format!("inv1 {} 1400 /usr/sbin:/usr/bin:/sbin:/bin present\n", mac(1)),
        "{}",
        node.log_text()
    );
    let log = node.log_text();
    let (done, stopped) = (log.find("down program"), log.find("stopped"));
    assert!(done.is_some() && done < stopped, "{log}");
}

/// A script that records its environment and whether the interface is
/// still there, in `record`.
fn recorder(dir: &std::path::Path, record: &std::path::Path) -> std::path::PathBuf {
    let down = dir.join("down.sh");
    std::fs::write(
        &down,
        format!(
            "#!/bin/sh\nif ip link show \"$INTERFACE\" >/dev/null 2>&1; then there=present; \
             else there=gone; fi\necho \"$INTERFACE $MAC $MTU $PATH $there\" >> {}\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&down, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    down
}

#[test]
fn down_runs_when_the_daemon_stops_on_a_fatal_error() {
    if !root_or_skip("down_runs_when_the_daemon_stops_on_a_fatal_error") {
        return;
    }
    let pki = Pki::new();
    let lab = Lab::new(1);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("down.log");
    let down = recorder(dir.path(), &record);
    let mut node = Node::start(
        &lab,
        0,
        &pki,
        NodeConf {
            extra: format!("[interface]\ndown = {}\n", down.display()),
            ..NodeConf::new(1, mac(1))
        },
    );
    assert!(node.wait_log(10, "up program"), "{}", node.log_text());
    // the interface deleted under the daemon: it cannot go on
    run("ip", &["-n", lab.ns(0), "link", "del", "inv1"]);
    assert_eq!(node.wait_exit(10), Some(1), "{}", node.log_text());
    let line = std::fs::read_to_string(&record).unwrap_or_default();
    assert_eq!(
        line,
        format!("inv1 {} 1500 /usr/sbin:/usr/bin:/sbin:/bin gone\n", mac(1)),
        "{}",
        node.log_text()
    );
}
