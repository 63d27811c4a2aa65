//! Test support for namespace tests: root checks, certificates, network
//! namespaces with veth links, and invpnd processes that are always
//! cleaned up (by PID), even when a test fails.
#![allow(dead_code)]

pub mod hostile;
pub mod lab;
pub mod node;
pub mod wan;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use invpn::core::Mac;
use invpn::pki::{self, CertAndKey, KeyType, Validity};

#[allow(unused_imports)]
pub use lab::Lab;
#[allow(unused_imports)]
pub use node::{Node, NodeConf};

/// Whether the test may run: it needs root for TAP interfaces and
/// namespaces. Without root it is skipped with a visible message, unless
/// `INVPN_REQUIRE_ROOT=1` (as in CI), where it fails.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY-free check: effective uid from /proc.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        return true;
    }
    if std::env::var("INVPN_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: needs root (INVPN_REQUIRE_ROOT=1 forbids skipping)");
    }
    eprintln!("SKIPPED {test}: needs root (TAP interfaces and network namespaces)");
    false
}

/// A short name unique to this process and call, for namespaces and links.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 50 ms until it is true or `secs` pass.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A node MAC for tests: 02:50:56:00:00:nn.
pub fn mac(n: u8) -> Mac {
    Mac([2, 0x50, 0x56, 0, 0, n])
}

/// The `init` seed for node `node` listening on `addr`:41744.
pub fn seed(node: u8, addr: &str) -> String {
    format!("{}@{addr}:41744", mac(node))
}

fn output(cmd: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs invpnd; returns (exit code, stdout, stderr).
pub fn invpnd(args: &[&str]) -> (i32, String, String) {
    output(env!("CARGO_BIN_EXE_invpnd"), args)
}

/// Runs invpnctl; returns (exit code, stdout, stderr).
pub fn invpnctl(args: &[&str]) -> (i32, String, String) {
    output(env!("CARGO_BIN_EXE_invpnctl"), args)
}

/// Runs openssl in `dir`, panicking with its message if it fails; returns
/// its standard output.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and node certificates in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertAndKey,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = pki::new_ca(&unique("test CA "), Validity::days_from_now(30), KeyType::EcdsaP256)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        Pki { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// Writes `name.crt` and `name.key`; returns their paths.
    pub fn write(&self, name: &str, ck: &CertAndKey) -> (PathBuf, PathBuf) {
        let (c, k) = (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")));
        std::fs::write(&c, &ck.cert_pem).unwrap();
        std::fs::write(&k, &ck.key_pem).unwrap();
        (c, k)
    }

    /// A valid node certificate for `m`.
    pub fn node(&self, name: &str, m: Mac) -> (PathBuf, PathBuf) {
        let ck =
            pki::new_node(&self.ca, m, Validity::days_from_now(30), KeyType::EcdsaP256).unwrap();
        self.write(name, &ck)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// Whether a file contains `needle` (logs).
pub fn file_contains(p: &Path, needle: &str) -> bool {
    std::fs::read_to_string(p).map(|s| s.contains(needle)).unwrap_or(false)
}

/// Two nodes on one link: node 1 (198.18.1.1) and node 2 seeded from it.
/// Fields drop in order: the nodes stop before their namespaces go.
pub struct Pair {
    pub a: Node,
    pub b: Node,
    pub lab: Lab,
}

/// Starts a [`Pair`].
pub fn pair(pki: &Pki) -> Pair {
    pair_with(pki, NodeConf::new(1, mac(1)))
}

/// Starts a [`Pair`] whose node 1 has configuration `a`.
pub fn pair_with(pki: &Pki, a: NodeConf) -> Pair {
    let mut lab = Lab::new(2);
    lab.link(0, 1, 1);
    let a = Node::start(&lab, 0, pki, a);
    let b = Node::start(
        &lab,
        1,
        pki,
        NodeConf { init: vec![seed(1, "198.18.1.1")], ..NodeConf::new(2, mac(2)) },
    );
    Pair { a, b, lab }
}

/// An `iperf3 -s -1` (one test, then it exits) in namespace `i` of a lab,
/// ended by PID when dropped.
pub struct Iperf3Server(std::process::Child);

impl Iperf3Server {
    /// Starts it on `port` and waits until it listens.
    pub fn start(lab: &Lab, i: usize, port: u16) -> Iperf3Server {
        let child = Command::new("ip")
            .args(["netns", "exec", lab.ns(i), "iperf3", "-s", "-1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("iperf3");
        let server = Iperf3Server(child);
        let probe = format!("ss -ltn | grep -q ':{port} '");
        assert!(
            wait_until(5, || lab.exec_ok(i, &["sh", "-c", &probe])),
            "iperf3 server did not listen on port {port}"
        );
        server
    }
}

impl Drop for Iperf3Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// The receiver's rate (Mbit/s) in iperf3's `-J` output; 0 if absent.
pub fn iperf3_mbit(json: &[u8]) -> f64 {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6
}

/// A CRL of the CA in `ca_dir` revoking `serials` (hex with colons, as
/// `cert show --json` prints them).
pub fn crl(ca_dir: &Path, serials: &[&str]) -> rcgen::CertificateRevocationList {
    let ca = invpn::pki::load_ca(ca_dir).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &ca.cert_pem,
        rcgen::KeyPair::from_pem(&ca.key_pem).unwrap(),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let revoked = serials
        .iter()
        .map(|hex| rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(
                &hex.split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect::<Vec<_>>(),
            ),
            revocation_time: now,
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        })
        .collect();
    rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(7),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap()
}
