//! Network namespaces joined by veth links, deleted when the lab drops.

use std::process::Command;

use super::{run, unique};

/// A set of namespaces and the links between them.
pub struct Lab {
    pub namespaces: Vec<String>,
    links: usize,
}

impl Lab {
    /// `n` fresh namespaces with loopback up.
    pub fn new(n: usize) -> Lab {
        let mut lab = Lab { namespaces: Vec::new(), links: 0 };
        for _ in 0..n {
            let ns = unique("invpnt");
            run("ip", &["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// The name of namespace `i`.
    pub fn ns(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// Links namespaces `a` and `b` with a veth pair on subnet
    /// 198.18.`net`.0/24 (`a` gets .`a+1`, `b` gets .`b+1`). Returns the two
    /// interface names.
    pub fn link(&mut self, a: usize, b: usize, net: u8) -> (String, String) {
        self.links += 1;
        let base = unique("iv");
        let (ia, ib) = (format!("{base}a"), format!("{base}b"));
        run(
            "ip",
            &[
                "link",
                "add",
                &ia,
                "netns",
                self.ns(a),
                "type",
                "veth",
                "peer",
                "name",
                &ib,
                "netns",
                self.ns(b),
            ],
        );
        for (i, ifc) in [(a, &ia), (b, &ib)] {
            let addr = format!("198.18.{net}.{}/24", i + 1);
            run("ip", &["-n", self.ns(i), "addr", "add", &addr, "dev", ifc]);
            run("ip", &["-n", self.ns(i), "link", "set", ifc, "up"]);
        }
        (ia, ib)
    }

    /// Puts namespaces `members` on one switch (a bridge in an extra
    /// namespace), subnet 198.18.`net`.0/24, member `i` at .`i+1`.
    pub fn switch(&mut self, members: &[usize], net: u8) {
        let sw = unique("invsw");
        run("ip", &["netns", "add", &sw]);
        self.namespaces.push(sw.clone());
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &sw, "link", "set", "br0", "up"]);
        for &i in members {
            let base = unique("iv");
            let (ia, ib) = (format!("{base}a"), format!("{base}b"));
            run(
                "ip",
                &[
                    "link",
                    "add",
                    &ia,
                    "netns",
                    self.ns(i),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &ib,
                    "netns",
                    &sw,
                ],
            );
            run("ip", &["-n", &sw, "link", "set", &ib, "master", "br0", "up"]);
            let addr = format!("198.18.{net}.{}/24", i + 1);
            run("ip", &["-n", self.ns(i), "addr", "add", &addr, "dev", &ia]);
            run("ip", &["-n", self.ns(i), "link", "set", &ia, "up"]);
        }
    }

    /// A counter of an interface in namespace `i` (e.g. `rx_packets`).
    pub fn counter(&self, i: usize, ifc: &str, name: &str) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                self.ns(i),
                "cat",
                &format!("/sys/class/net/{ifc}/statistics/{name}"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        out.parse().unwrap_or(0)
    }

    /// Runs a command inside namespace `i`; returns whether it succeeded.
    pub fn exec_ok(&self, i: usize, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", self.ns(i)])
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// One ping from namespace `i` to `addr` (IPv4 or IPv6), 1 s timeout.
    pub fn ping(&self, i: usize, addr: &str) -> bool {
        self.exec_ok(i, &["ping", "-c", "1", "-W", "1", "-q", addr])
    }

    /// Sets an interface in namespace `i` up or down.
    pub fn set_link(&self, i: usize, ifc: &str, up: bool) {
        run("ip", &["-n", self.ns(i), "link", "set", ifc, if up { "up" } else { "down" }]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            // Anything still inside was started by the test: end it first.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
