//! An authenticated node turned hostile: `openssl s_client` with a valid
//! certificate, linked to a node as an invpnd neighbour, sending whatever
//! the test writes (tests/attack_*.rs).

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::{mac, Lab, Pki};
use invpn::core::{wire, Mac};

/// The hostile node's MAC number (`mac(HOSTILE)`).
pub const HOSTILE: u8 = 0x66;

/// An authenticated node whose messages the test writes.
pub struct Hostile {
    child: Child,
    stdin: ChildStdin,
    /// Bytes of messages written so far.
    pub sent: usize,
}

impl Hostile {
    /// Links to `target` from namespace `ns` as an invpnd node (ALPN
    /// `invpn/2`) with a valid certificate for [`HOSTILE`]'s MAC, and
    /// announces itself, with no address (nobody dials it).
    pub fn link(lab: &Lab, ns: usize, pki: &Pki, target: &str) -> Hostile {
        let (cert, key) = pki.node("hostile", mac(HOSTILE));
        let mut child = Command::new("ip")
            .args(["netns", "exec", lab.ns(ns), "openssl", "s_client", "-quiet"])
            .args(["-connect", target, "-alpn", "invpn/2"])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .arg("-CAfile")
            .arg(pki.ca_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut h = Hostile { child, stdin, sent: 0 };
        h.announce(mac(HOSTILE));
        h
    }

    pub fn send(&mut self, msg: &[u8]) {
        self.stdin.write_all(msg).unwrap();
        self.stdin.flush().unwrap();
        self.sent += msg.len();
    }

    /// An addressless announcement of `m` with a fresh id.
    pub fn announce(&mut self, m: Mac) {
        let mut a = Vec::new();
        let id = now_ms();
        let addr = wire::AnnouncedAddr::None;
        wire::encode_announce(&mut a, &wire::Announce { version: 1, id, mac: m, port: 1, addr });
        self.send(&a);
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn now_ms() -> u64 {
    invpn::daemon::clock::unix_ms()
}
