//! An emulated WAN between two namespaces of a [`Lab`]: a middle namespace
//! whose two veths are bridged by the project's emulator
//! (`examples/wanem.rs`: delay, loss, rate with a drop-tail queue, jitter),
//! with offloads off on every veth of the path. The emulator is ended by
//! PID and the middle namespace deleted when the [`Wan`] drops (its log is
//! printed if the test is failing).
//!
//! The emulator is an example, not a binary, so cargo does not hand its
//! path to tests: [`emulator`] looks for it beside the test executable
//! (`target/<profile>/examples/wanem`, built by `cargo build --example
//! wanem`, which `make test` does first; `cargo test --all-targets` alone
//! only builds the example's own unit tests), then in the other profile,
//! or takes `$INVPN_WANEM`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{file_contains, run, unique, wait_until, Lab};

/// The path conditions, per direction (the emulator's arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WanSpec {
    /// One-way delay, ms.
    pub delay_ms: f64,
    /// Random loss, percent.
    pub loss_pct: f64,
    /// Link rate, Mbit/s (0: unlimited).
    pub rate_mbit: f64,
    /// Drop-tail queue in front of the link, ms of the link's time.
    pub queue_ms: f64,
    /// Extra delay per frame, uniform in [0, jitter_ms] (reorders).
    pub jitter_ms: f64,
    /// Seed of the loss and jitter generators.
    pub seed: u64,
}

impl WanSpec {
    /// A path with a delay, a loss rate and a link rate; 50 ms of queue,
    /// no jitter, seed 1.
    pub fn new(delay_ms: f64, loss_pct: f64, rate_mbit: f64) -> WanSpec {
        WanSpec { delay_ms, loss_pct, rate_mbit, queue_ms: 50.0, jitter_ms: 0.0, seed: 1 }
    }

    /// The positional numbers after the two interfaces.
    fn numbers(&self) -> Vec<String> {
        [self.delay_ms, self.loss_pct, self.rate_mbit, self.queue_ms, self.jitter_ms]
            .iter()
            .map(|x| x.to_string())
            .collect()
    }
}

/// The emulator binary: `$INVPN_WANEM`, else `examples/wanem` of the test
/// executable's profile, else of the other profile (debug / release).
pub fn emulator() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("INVPN_WANEM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    // target/<profile>/deps/<test>-<hash>
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let target = profile_dir.parent()?;
    let mut candidates = vec![profile_dir.join("examples/wanem")];
    for p in ["debug", "release"] {
        candidates.push(target.join(p).join("examples/wanem"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The emulator, or None after a visible skip message (a panic under
/// `INVPN_REQUIRE_ROOT=1`, as for root).
pub fn emulator_or_skip(test: &str) -> Option<PathBuf> {
    let found = emulator();
    if found.is_none() {
        let msg = "needs the WAN emulator: cargo build --example wanem (or set INVPN_WANEM)";
        if std::env::var("INVPN_REQUIRE_ROOT").as_deref() == Ok("1") {
            panic!("{test}: {msg}");
        }
        eprintln!("SKIPPED {test}: {msg}");
    }
    found
}

/// A running emulated WAN between two namespaces.
pub struct Wan {
    /// The middle namespace (holds the emulator and both veth ends).
    pub ns: String,
    /// The interfaces in the two end namespaces.
    pub ifaces: (String, String),
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Wan {
    /// Links namespaces `a` and `b` of `lab` through emulator `bin` on
    /// subnet 198.18.`net`.0/24 (`a` gets .`a+1`, `b` gets .`b+1`, as with
    /// [`Lab::link`]); returns once the emulator runs.
    pub fn link(lab: &Lab, a: usize, b: usize, net: u8, bin: &PathBuf, spec: WanSpec) -> Wan {
        let ns = unique("invwan");
        run("ip", &["netns", "add", &ns]);
        let dir = tempfile::tempdir().unwrap();
        let base = unique("iw");
        let (ia, ib) = (format!("{base}a"), format!("{base}b"));
        let (ma, mb) = (format!("{base}A"), format!("{base}B"));
        let mut wan = Wan { ns: ns.clone(), ifaces: (ia.clone(), ib.clone()), child: None, dir };
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        for (end, ifc, mid) in [(a, &ia, &ma), (b, &ib, &mb)] {
            run(
                "ip",
                &[
                    "link",
                    "add",
                    ifc,
                    "netns",
                    lab.ns(end),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    mid,
                    "netns",
                    &ns,
                ],
            );
        }
        // frames of at most one MTU on every veth of the path
        for (n, ifc) in [(lab.ns(a), &ia), (lab.ns(b), &ib), (&ns, &ma), (&ns, &mb)] {
            run(
                "ip",
                &[
                    "netns", "exec", n, "ethtool", "-K", ifc, "gro", "off", "gso", "off", "tso",
                    "off", "tx", "off", "rx", "off",
                ],
            );
            run("ip", &["-n", n, "link", "set", ifc, "up"]);
        }
        for (end, ifc) in [(a, &ia), (b, &ib)] {
            let addr = format!("198.18.{net}.{}/24", end + 1);
            run("ip", &["-n", lab.ns(end), "addr", "add", &addr, "dev", ifc]);
        }
        let log = wan.log_path();
        let out = std::fs::File::create(&log).unwrap();
        // `ip netns exec` execs the emulator: the child's PID is its PID
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(bin)
            .args(["-s", &spec.seed.to_string(), &ma, &mb])
            .args(spec.numbers())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        wan.child = Some(child);
        // it prints its parameters once both directions' sockets are open
        let started = wait_until(5, || file_contains(&log, "<->"));
        let exited = wan.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(started && exited.is_none(), "the emulator did not start:\n{}", wan.log_text());
        wan
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("wanem.log")
    }

    /// What the emulator printed so far (its summary once stopped).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Ends the emulator (SIGTERM by PID, SIGKILL after 2 s); returns its
    /// log, which ends with the per-direction summary.
    pub fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let ended = wait_until(2, || child.try_wait().ok().flatten().is_some());
            if !ended {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.log_text()
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let log = self.stop();
        if std::thread::panicking() {
            eprintln!("---- emulator log ({}) ----\n{log}", self.ns);
        }
        // deleting the namespace deletes both veth pairs
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
