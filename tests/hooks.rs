//! The `up` and `down` programs of [interface] on a real TAP interface
//! (in a network namespace, so root): `down` runs at a stop while the
//! interface still exists, with the same environment as `up`, and not
//! around a restart in place, which keeps the interface; and when the
//! daemon stops on a fatal error.

mod common;

use std::path::PathBuf;

use common::*;

/// A node (1, in namespace 0 of `lab`) whose `down` program appends its
/// environment, and whether the interface was still there, to the file
/// returned; `interface` adds lines to [interface].
fn with_down(lab: &Lab, pki: &Pki, dir: &tempfile::TempDir, interface: &str) -> (Node, PathBuf) {
    let record = dir.path().join("down.log");
    let down = dir.path().join("down.sh");
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
    let node = Node::start(
        lab,
        0,
        pki,
        NodeConf {
            extra: format!("[interface]\n{interface}down = {}\n", down.display()),
            ..NodeConf::new(1, mac(1))
        },
    );
    assert!(node.wait_log(10, "up program"), "{}", node.log_text());
    let (_, check, _) = invpnd(&["-t", "-c", node.conf.to_str().unwrap()]);
    assert!(check.contains(&format!("down program {}", down.display())), "{check}");
    (node, record)
}

/// Asserts that the down program recorded `want` (else shows the log).
fn recorded(record: &PathBuf, node: &Node, want: &str) {
    let line = std::fs::read_to_string(record).unwrap_or_default();
    assert_eq!(line, want, "{}", node.log_text());
}

#[test]
fn down_runs_at_stop_and_not_around_a_restart_in_place() {
    if !root_or_skip("down_runs_at_stop_and_not_around_a_restart_in_place") {
        return;
    }
    let (pki, lab, dir) = (Pki::new(), Lab::new(1), tempfile::tempdir().unwrap());
    let (mut node, record) = with_down(&lab, &pki, &dir, "mtu = 1400\n");

    node.signal("USR2");
    assert!(node.wait_log(10, "restarted in place"), "{}", node.log_text());
    assert!(!record.exists(), "down ran around a restart in place");
    assert_eq!(node.log_count("up program"), 1);

    // the interface must still be there for the program to clean up after it
    assert_eq!(node.stop(), Some(0));
    let env = format!("inv1 {} 1400 /usr/sbin:/usr/bin:/sbin:/bin", mac(1));
    recorded(&record, &node, &format!("{env} present\n"));
    let log = node.log_text();
    let (done, stopped) = (log.find("down program"), log.find("stopped"));
    assert!(done.is_some() && done < stopped, "{log}");
}

#[test]
fn down_runs_when_the_daemon_stops_on_a_fatal_error() {
    if !root_or_skip("down_runs_when_the_daemon_stops_on_a_fatal_error") {
        return;
    }
    let (pki, lab, dir) = (Pki::new(), Lab::new(1), tempfile::tempdir().unwrap());
    let (mut node, record) = with_down(&lab, &pki, &dir, "");
    // the interface deleted under the daemon: it cannot go on
    run("ip", &["-n", lab.ns(0), "link", "del", "inv1"]);
    assert_eq!(node.wait_exit(10), Some(1), "{}", node.log_text());
    let env = format!("inv1 {} 1500 /usr/sbin:/usr/bin:/sbin:/bin", mac(1));
    recorded(&record, &node, &format!("{env} gone\n"));
}
