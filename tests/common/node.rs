//! An invpnd process in a namespace, with its configuration and log, ended
//! by PID when dropped (its log is printed if the test is failing).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{file_contains, wait_until, Lab, Pki};
use invpn::core::Mac;

/// What to put in a node's configuration.
#[derive(Debug, Clone)]
pub struct NodeConf {
    pub mac: Mac,
    /// Node number: overlay 198.19.0.`n`, fd00::`n`.
    pub n: u8,
    /// Address to listen on (also the seed address others use).
    pub bind: Option<String>,
    pub init: Vec<String>,
    /// Extra lines for the [network] section.
    pub network_extra: Vec<String>,
    /// Extra sections appended verbatim.
    pub extra: String,
    /// Certificate and key (default: a valid one from the Pki).
    pub cert: Option<(PathBuf, PathBuf)>,
    /// CA file (default: the Pki's CA).
    pub ca: Option<PathBuf>,
    /// The announce interval (default 1s, to keep tests quick).
    pub announce_interval: String,
    /// The node cache file (default `cache` beside the configuration).
    pub cache: String,
    /// Extra environment variables for the process (test hooks).
    pub env: Vec<(String, String)>,
    /// `[daemon] user` (default `root`): for another user, the node's
    /// directory, configuration, key and certificates are given to it.
    pub user: Option<String>,
}

impl NodeConf {
    pub fn new(n: u8, mac: Mac) -> NodeConf {
        NodeConf {
            mac,
            n,
            bind: None,
            init: Vec::new(),
            network_extra: Vec::new(),
            extra: String::new(),
            cert: None,
            ca: None,
            announce_interval: "1s".to_string(),
            cache: "cache".to_string(),
            env: Vec::new(),
            user: None,
        }
    }
}

/// A running invpnd.
pub struct Node {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub log: PathBuf,
    pub ns: String,
    pub n: u8,
    pub mac: Mac,
    pub env: Vec<(String, String)>,
}

impl Node {
    /// Writes the configuration (and an `up` script that gives the TAP its
    /// overlay addresses) and starts invpnd in namespace `ns` of the lab.
    pub fn start(lab: &Lab, ns: usize, pki: &Pki, c: NodeConf) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (mut cert, mut key) =
            c.cert.clone().unwrap_or_else(|| pki.node(&format!("node{}", c.n), c.mac));
        let mut ca = c.ca.clone().unwrap_or_else(|| pki.ca_path());
        let owner = c.user.as_deref().map(|u| {
            let id = |flag: &str| super::run("id", &[flag, u]).trim().parse::<u32>().unwrap();
            (id("-u"), id("-g"))
        });
        if let Some((uid, gid)) = owner {
            // the daemon reads these again as the user: copies it owns
            for p in [&mut cert, &mut key, &mut ca] {
                let copy = dir.path().join(p.file_name().unwrap());
                std::fs::copy(&*p, &copy).unwrap();
                std::os::unix::fs::chown(&copy, Some(uid), Some(gid)).unwrap();
                *p = copy;
            }
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let up = dir.path().join("up.sh");
        std::fs::write(
            &up,
            format!(
                "#!/bin/sh\nset -e\nip addr add 198.19.0.{n}/24 dev \"$INTERFACE\"\n\
                 ip addr add fd00::{n:x}/64 dev \"$INTERFACE\" nodad\n",
                n = c.n
            ),
        )
        .unwrap();
        std::fs::set_permissions(&up, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut text = format!(
            "[ssl]\nkey = {}\ncert = {}\nca = {}\n[network]\ncache = {}\nannounce_interval = {}\n",
            key.display(),
            cert.display(),
            ca.display(),
            c.cache,
            c.announce_interval
        );
        if let Some(b) = &c.bind {
            text.push_str(&format!("bind = {b}\n"));
        }
        if !c.init.is_empty() {
            text.push_str(&format!("init = {}\n", c.init.join(", ")));
        }
        for l in &c.network_extra {
            text.push_str(l);
            text.push('\n');
        }
        text.push_str(&format!("[interface]\nname = inv{}\nup = {}\n", c.n, up.display()));
        text.push_str("[control]\nsocket = ctl.sock\n");
        text.push_str(&c.extra);
        text.push_str(&format!("[daemon]\nuser = {}\n", c.user.as_deref().unwrap_or("root")));
        let conf = dir.path().join("invpn.conf");
        std::fs::write(&conf, text).unwrap();
        if let Some((uid, gid)) = owner {
            for f in [&conf, &up] {
                std::os::unix::fs::chown(f, Some(uid), Some(gid)).unwrap();
            }
        }
        let log = dir.path().join("invpnd.log");
        let ns = lab.ns(ns).to_string();
        let mut node = Node { child: None, dir, conf, log, ns, n: c.n, mac: c.mac, env: c.env };
        node.spawn(&[]);
        node
    }

    /// Starts (or restarts) the process with extra arguments.
    pub fn spawn(&mut self, extra: &[&str]) {
        let logf = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_invpnd"), "-v", "-c"])
            .arg(&self.conf)
            .args(extra)
            .env("RUST_LOG", "invpn=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("ctl.sock")
    }

    /// `invpnctl --json CMD` against this node, parsed (Null if it fails).
    pub fn query(&self, cmd: &str) -> serde_json::Value {
        let sock = self.socket();
        let (_, out, _) =
            super::invpnctl(&["--socket", sock.to_str().unwrap_or(""), "--json", cmd]);
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
    }

    /// Links (and connections) this node closed or saw closed for `cause`
    /// (`invpnctl status`'s close counters; 0 if it does not answer).
    pub fn closes(&self, cause: &str) -> u64 {
        self.query("status")["closes"][cause].as_u64().unwrap_or(0)
    }

    /// Links up, from the log.
    pub fn links_up(&self) -> usize {
        self.log_count("link up:").saturating_sub(self.log_count("link down:"))
    }

    /// The TAP interface name.
    pub fn ifname(&self) -> String {
        format!("inv{}", self.n)
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, secs: u64, needle: &str) -> bool {
        wait_until(secs, || file_contains(&self.log, needle))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Counts occurrences of `needle` in the log.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([&format!("-{sig}"), &self.pid().to_string()]).status();
    }

    /// Stops it with SIGTERM (SIGKILL after 5 s); returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        self.signal_pid(child.id(), "TERM");
        for _ in 0..100 {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok().and_then(|s| s.code())
    }

    /// Kills it with SIGKILL (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for it to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let child = self.child.as_mut()?;
        let mut code = None;
        wait_until(secs, || match child.try_wait() {
            Ok(Some(st)) => {
                code = st.code();
                true
            }
            _ => false,
        });
        if code.is_some() {
            self.child = None;
        }
        code
    }

    fn signal_pid(&self, pid: u32, sig: &str) {
        let _ = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- log of node {} ({}) ----\n{}", self.n, self.mac, self.log_text());
        }
    }
}
