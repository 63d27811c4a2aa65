//! The TAP interface and the threads that do its blocking I/O: one reads
//! frames and hands them to the engine and the workers, one writes the
//! frames the workers deliver.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{error, info, warn};

use super::channels::{Spinner, ToSupervisor};
use super::Shared;
use crate::config::Interface;
use crate::core::direct::RelayMeter;
use crate::core::offload::VNET_HDR_LEN;
use crate::core::stats::{Counter, DropReason};
use crate::core::wire::{FRAME_HEADROOM, VNET_READ_AT};
use crate::core::{Fanout, Mac, TapAction};

/// An open TAP interface.
pub struct Tap {
    /// The descriptor, for plain reads and writes of frames.
    pub file: Arc<File>,
    /// The interface's name.
    pub name: String,
    /// Its MTU.
    pub mtu: u16,
    /// Its interface index.
    pub ifindex: u32,
    /// Whether frames carry a virtio-net header (TCP segmentation and
    /// checksum offload between the kernel and invpnd).
    pub vnet: bool,
}

/// Why the TAP could not be set up.
#[derive(Debug)]
pub enum TapError {
    /// The kernel refused to create the interface.
    Create {
        /// The interface name asked for.
        name: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// The interface exists but one step of its setup failed.
    Setup {
        /// The interface.
        name: String,
        /// The step: `MTU`, `setting offloads`, ...
        what: &'static str,
        /// The kernel's error.
        source: io::Error,
    },
    /// `--tunfd` names no open TAP interface.
    NotOpen {
        /// The descriptor given.
        fd: RawFd,
        /// The kernel's error.
        source: io::Error,
    },
    /// `--tunfd` names a TUN interface, which carries no Ethernet frames.
    NotTap {
        /// The descriptor given.
        fd: RawFd,
        /// The interface it is open on.
        name: String,
    },
    /// The interface to adopt has another MAC than the node's certificate.
    WrongMac {
        /// The interface.
        name: String,
        /// Its MAC.
        have: Mac,
        /// The certificate's.
        want: Mac,
    },
}

impl std::fmt::Display for TapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TapError::Create { name, source } => {
                write!(f, "cannot create TAP interface {name}: {source}")
            }
            TapError::Setup { name, what, source } => write!(f, "{name}: {what}: {source}"),
            TapError::NotOpen { fd, source } => {
                write!(f, "--tunfd {fd}: not an open TAP interface: {source}")
            }
            TapError::NotTap { fd, name } => write!(f, "--tunfd {fd}: {name} is a TUN, not a TAP"),
            TapError::WrongMac { name, have, want } => {
                write!(f, "{name} has MAC {have}, but this node's certificate is for {want}")
            }
        }
    }
}

impl std::error::Error for TapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TapError::Create { source, .. }
            | TapError::Setup { source, .. }
            | TapError::NotOpen { source, .. } => Some(source),
            TapError::NotTap { .. } | TapError::WrongMac { .. } => None,
        }
    }
}

/// A `map_err` for one setup step of interface `name`.
fn step<'a>(name: &'a str, what: &'static str) -> impl Fn(io::Error) -> TapError + 'a {
    move |source| TapError::Setup { name: name.to_string(), what, source }
}

impl Tap {
    /// Creates the interface (no packet-info header), sets its MAC and MTU,
    /// enables offloads if asked (falling back without them if the kernel
    /// refuses) and brings it up.
    pub fn create(cfg: &Interface, mac: Mac, offload: bool) -> Result<Tap, TapError> {
        let build = |off: bool| {
            tun_rs::DeviceBuilder::new()
                .name(cfg.name.clone())
                .layer(tun_rs::Layer::L2)
                .mac_addr(mac.0)
                .mtu(cfg.mtu)
                .with(|b| {
                    b.offload(off);
                })
                .enable(true)
                .build_sync()
        };
        let err = |source: io::Error| TapError::Create { name: cfg.name.clone(), source };
        let (dev, vnet) = match build(offload) {
            Ok(d) => (d, offload),
            Err(e) if offload => {
                warn!("TAP offloads unavailable ({e}); running without them");
                (build(false).map_err(err)?, false)
            }
            Err(e) => return Err(err(e)),
        };
        if vnet {
            // TCP segmentation and checksums only: tun-rs may also have
            // enabled UDP segmentation, which invpnd does not segment.
            crate::sys::tun_set_offload(dev.as_raw_fd(), true)
                .map_err(step(&cfg.name, "setting offloads"))?;
        }
        let name = dev.name().map_err(step(&cfg.name, "its name"))?;
        let mtu = dev.mtu().map_err(step(&name, "MTU"))?;
        let ifindex = dev.if_index().map_err(step(&name, "ifindex"))?;
        let file =
            crate::sys::file_from_fd(dev.into_raw_fd()).map_err(step(&name, "descriptor"))?;
        Ok(Tap { file: Arc::new(file), name, mtu, ifindex, vnet })
    }

    /// Adopts a TAP already open on `fd` (from `--tunfd`, after a restart in
    /// place): same interface, still up, addresses kept; the MTU is set if
    /// the configuration changed it. Offloads stay as they were.
    pub fn adopt(fd: RawFd, mac: Mac, mtu: u16) -> Result<Tap, TapError> {
        let bad = |source: io::Error| TapError::NotOpen { fd, source };
        let info = crate::sys::tun_info(fd).map_err(bad)?;
        if !info.tap {
            return Err(TapError::NotTap { fd, name: info.name });
        }
        let name = info.name.clone();
        let file = crate::sys::file_from_fd(fd).map_err(bad)?;
        let have = Mac(crate::sys::if_hwaddr(&name).map_err(step(&name, "MAC"))?);
        if have != mac {
            return Err(TapError::WrongMac { name, have, want: mac });
        }
        let have_mtu = crate::sys::if_mtu(&name).map_err(step(&name, "MTU"))?;
        let mut tap_mtu = u16::try_from(have_mtu).unwrap_or(u16::MAX);
        if tap_mtu != mtu {
            crate::sys::if_set_mtu(&name, mtu).map_err(step(&name, "setting the MTU"))?;
            info!("{name}: MTU changed from {tap_mtu} to {mtu}");
            tap_mtu = mtu;
        }
        let ifindex = crate::sys::if_index(&name).map_err(step(&name, "ifindex"))?;
        Ok(Tap { file: Arc::new(file), name, mtu: tap_mtu, ifindex, vnet: info.vnet_hdr })
    }

    /// The descriptor (for `--tunfd` on restart).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// How long an `up` or `down` program may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// The `PATH` the `up` and `down` programs get.
pub const HOOK_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The operator's programs around the interface's life: `up` once it is
/// up, `down` just before it goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `[interface] up`.
    Up,
    /// `[interface] down`.
    Down,
}

impl Hook {
    /// Its `[interface]` key, as the log names it.
    pub fn key(self) -> &'static str {
        match self {
            Hook::Up => "up",
            Hook::Down => "down",
        }
    }
}

/// Runs the operator's `up` or `down` program for interface `iface`,
/// waiting at most `timeout` for it. Its environment is only `PATH`
/// (`HOOK_PATH`), `INTERFACE`, `MAC` and `MTU` (documented in invpnd(8)
/// and invpn.conf(5)); its standard input is /dev/null. It runs in a
/// process group of its own, and if it outlives `timeout` the whole group
/// is killed, with whatever it started and waited for.
pub fn run_hook(
    hook: Hook,
    program: &std::path::Path,
    iface: &str,
    mac: Mac,
    mtu: u16,
    timeout: Duration,
) {
    use std::os::unix::process::CommandExt;
    let what = format!("{} program {}", hook.key(), program.display());
    let spawn = || {
        std::process::Command::new(program)
            .env_clear()
            .env("PATH", HOOK_PATH)
            .env("INTERFACE", iface)
            .env("MAC", mac.to_string())
            .env("MTU", mtu.to_string())
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()
    };
    // A program just written (by a deployment tool, or a test) is "busy"
    // while another thread's fork still holds it open for writing: the
    // moment passes at that child's exec, so try a few times.
    let mut tries = 0;
    let mut child = loop {
        match spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                error!("{what}: cannot run: {e}");
                return;
            }
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => {
                info!("{what} done");
                return;
            }
            Ok(Some(st)) => {
                warn!("{what} failed: {st}");
                return;
            }
            Ok(None) if Instant::now() > deadline => {
                // its group has the child's id (process_group(0))
                if let Err(e) = crate::sys::kill_process_group(child.id()) {
                    warn!("{what}: killing its process group: {e}");
                    let _ = child.kill();
                }
                let _ = child.wait();
                warn!("{what} killed after {} s, with its process group", timeout.as_secs_f32());
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                warn!("{what}: {e}");
                return;
            }
        }
    }
}

/// The interface's hooks over its life in this process. Once the interface
/// is up ([`Hooks::up`] ran, or it was adopted from the process before a
/// restart in place), the `down` program runs exactly once when this
/// process lets the interface go: at a stop, on a fatal error, or when a
/// restart in place fails to execute the new program ([`Hooks::down`], or
/// on drop for any other way out, such as an error while starting). A
/// restart in place that succeeds never returns, so the kept interface
/// gets no `down` (and the new process no `up`).
#[derive(Debug)]
pub struct Hooks {
    iface: String,
    mac: Mac,
    mtu: u16,
    /// The `down` program.
    down_program: Option<std::path::PathBuf>,
    /// Whether the interface is up, so that `down` is due.
    armed: bool,
    timeout: Duration,
}

impl Hooks {
    /// The hooks of interface `iface` (with `MAC` and `MTU` for their
    /// environment), with `down` to run as it goes away; `adopted`: the
    /// interface comes from the process before a restart in place, and is
    /// already up.
    pub fn new(
        iface: &str,
        mac: Mac,
        mtu: u16,
        down: Option<std::path::PathBuf>,
        adopted: bool,
    ) -> Hooks {
        Hooks {
            iface: iface.to_string(),
            mac,
            mtu,
            down_program: down,
            armed: adopted,
            timeout: HOOK_TIMEOUT,
        }
    }

    /// With another time limit for each program (for tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Hooks {
        self.timeout = timeout;
        self
    }

    /// The interface is up: runs the `up` program, if any; `down` is due
    /// from now on.
    pub fn up(&mut self, program: Option<&std::path::Path>) {
        self.armed = true;
        if let Some(p) = program {
            run_hook(Hook::Up, p, &self.iface, self.mac, self.mtu, self.timeout);
        }
    }

    /// The interface is about to go: runs the `down` program, if any and if
    /// the interface was up, once.
    pub fn down(&mut self) {
        if std::mem::take(&mut self.armed) {
            if let Some(p) = &self.down_program {
                run_hook(Hook::Down, p, &self.iface, self.mac, self.mtu, self.timeout);
            }
        }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.down();
    }
}

/// The token of the TAP descriptor in the TAP thread's poll.
const TAP: mio::Token = mio::Token(0);
/// The token of the TAP thread's waker (rung by [`Shared::to_tap_with`]
/// while the thread sleeps).
pub const WAKER: mio::Token = mio::Token(1);

/// Frames the TAP thread moves one way before it turns to the other.
const BATCH: usize = 64;

/// The TAP thread: frames read from the TAP become messages for links, and
/// frames the workers deliver are written to it (with their offload header,
/// when the TAP has them).
///
/// One thread does both, like a single-threaded VPN: after it writes a
/// frame, the kernel's answer to it (a ping's reply, a TCP ACK) is usually
/// queued on the TAP before the write returns, and the same thread reads it
/// at once instead of waking another (BENCHMARKS.md, "Idle latency"). It
/// writes and reads in turns of at most [`BATCH`] frames, and sleeps in
/// `poll` on the TAP and its waker when there is nothing either way. After
/// a long sleep it spins a while (see [`Spinner`]) before it sleeps again,
/// so that the next frame, typically the answer to the one that woke it,
/// finds it awake.
pub fn run(
    file: Arc<File>,
    vnet: bool,
    mut poll: mio::Poll,
    rx: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let fatal = |what: &str, e: io::Error| {
        shared.supervisor.send(ToSupervisor::Fatal(format!("{what} the TAP interface: {e}")));
    };
    let fd = file.as_raw_fd();
    if let Err(e) = crate::sys::set_nonblocking(fd).and_then(|()| {
        poll.registry().register(&mut mio::unix::SourceFd(&fd), TAP, mio::Interest::READABLE)
    }) {
        return fatal("polling", e);
    }
    let mut inbound = Inbound::new(vnet, shared.settings.direct_rate);
    let mut events = mio::Events::with_capacity(4);
    let mut spinner = Spinner::default();
    loop {
        let wrote = match write_some(&file, &rx, &shared) {
            Ok(n) => n,
            Err(e) => return fatal("writing", e),
        };
        let read = match inbound.read_some(&file, &shared) {
            Ok(n) => n,
            Err(e) => return fatal("reading", e),
        };
        if wrote > 0 || read > 0 {
            continue;
        }
        // Nothing either way, and the last read found the TAP empty: a
        // frame queued since wakes the (edge-triggered) poll.
        if spinner.spin(|| {
            !rx.is_empty() || {
                let _ = poll.poll(&mut events, Some(Duration::ZERO));
                !events.is_empty()
            }
        }) {
            continue;
        }
        shared.tap_wake.going_to_sleep();
        if !rx.is_empty() {
            shared.tap_wake.woke();
            continue;
        }
        let slept = Instant::now();
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != io::ErrorKind::Interrupted {
                return fatal("polling", e);
            }
        }
        shared.tap_wake.woke();
        spinner.woke(slept, Instant::now());
    }
}

/// Writes up to [`BATCH`] queued frames to the TAP; how many were queued.
/// Errors only if the TAP is gone.
fn write_some(file: &File, rx: &Receiver<Vec<u8>>, shared: &Shared) -> io::Result<usize> {
    let stats = shared.engine.stats();
    let mut n = 0;
    while n < BATCH {
        let Ok(frame) = rx.try_recv() else { break };
        n += 1;
        shared.tap_budget.give(frame.len());
        match (&*file).write(&frame) {
            Ok(_) => {
                stats.add(Counter::TapFramesOut, 1);
                stats.add(Counter::TapBytesOut, frame.len() as u64);
            }
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => return Err(e),
            // The interface is down, or the frame was refused: drop it.
            Err(_) => stats.drop(DropReason::BadFrame),
        }
    }
    Ok(n)
}

/// The reading half of the TAP thread: a buffer with room for the message
/// header in front of the frame.
struct Inbound {
    buf: Vec<u8>,
    at: usize,
    vnet: bool,
    /// What goes to each node through a relay (direct links on demand).
    meter: RelayMeter,
}

impl Inbound {
    fn new(vnet: bool, direct_rate: u64) -> Inbound {
        let at = if vnet { VNET_READ_AT } else { FRAME_HEADROOM };
        let buf = vec![0u8; at + VNET_HDR_LEN + 65536 + 64];
        Inbound { buf, at, vnet, meter: RelayMeter::new(direct_rate) }
    }

    /// Reads up to [`BATCH`] frames, until the TAP is empty, and hands each
    /// to the engine and the workers; how many were read. Errors only if
    /// the TAP is gone.
    fn read_some(&mut self, file: &File, shared: &Shared) -> io::Result<usize> {
        let mut n = 0;
        while n < BATCH {
            let len = match (&*file).read(&mut self.buf[self.at..]) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            n += 1;
            self.dispatch(len, shared);
        }
        Ok(n)
    }

    /// Hands a frame of `len` bytes, just read, to the engine and the
    /// workers.
    fn dispatch(&mut self, len: usize, shared: &Shared) {
        let buf = &mut self.buf;
        let now = shared.clock.now();
        let action = if self.vnet {
            shared.engine.tap_frame_vnet(buf, len, now)
        } else {
            shared.engine.tap_frame(buf, len, now)
        };
        let relay = match &action {
            TapAction::Unicast { relay, .. } | TapAction::Segments { relay, .. } => *relay,
            _ => None,
        };
        if let Some(peer) = relay.and_then(|dst| self.meter.relayed(dst, len, now.mono)) {
            shared.supervisor.send(ToSupervisor::WantDirect { peer });
        }
        match action {
            TapAction::Unicast { link, msg, .. } => shared.send_to_link(link, buf[msg].to_vec()),
            TapAction::Segments { link, msgs, .. } => {
                msgs.into_iter().for_each(|m| shared.send_to_link(link, m))
            }
            TapAction::Flood { msg } => shared.flood_workers(None, &buf[msg], &Fanout::all()),
            TapAction::Drop(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopting_a_descriptor_that_is_no_tap_says_so() {
        let f = File::open("/dev/null").unwrap();
        let e = match Tap::adopt(f.as_raw_fd(), Mac([2, 0, 0, 0, 0, 1]), 1500) {
            Err(e) => e,
            Ok(_) => panic!("/dev/null adopted as a TAP"),
        };
        assert!(matches!(e, TapError::NotOpen { .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("--tunfd {}: not an open TAP", f.as_raw_fd())));
        assert!(std::error::Error::source(&e).is_some());
    }

    /// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
    fn ended(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => {
                stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            }
        }
    }

    #[test]
    fn an_up_program_that_hangs_is_killed_with_its_children() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("up");
        let dir = d.path().display();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nenv > {dir}/env\nsleep 600 &\necho $! > {dir}/child\n\
                 echo $$ > {dir}/shell\nwait\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = Instant::now();
        run_hook(
            Hook::Up,
            &script,
            "invpn7",
            Mac([2, 0x50, 0x56, 0, 0, 7]),
            1400,
            Duration::from_secs(1),
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        for who in ["shell", "child"] {
            let pid = std::fs::read_to_string(d.path().join(who)).unwrap();
            let pid = pid.trim();
            let start = Instant::now();
            while !ended(pid) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(ended(pid), "the {who} ({pid}) still runs");
        }
        let env = std::fs::read_to_string(d.path().join("env")).unwrap();
        for want in [
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "INTERFACE=invpn7",
            "MAC=02:50:56:00:00:07",
            "MTU=1400",
        ] {
            assert!(env.lines().any(|l| l == want), "{want} not in {env}");
        }
        // nothing of invpnd's own environment (a shell adds PWD and such)
        let names: Vec<&str> =
            env.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
        for k in &names {
            assert!(
                ["PATH", "INTERFACE", "MAC", "MTU", "PWD", "SHLVL", "_", "OLDPWD"].contains(k),
                "{k} in {env}"
            );
        }
    }

    /// A script that appends its hook name and environment to `log`.
    fn recorder(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let script = dir.join(name);
        let log = dir.join("log");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"{name} $INTERFACE $MAC $MTU $PATH\" >> {}\n", log.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[test]
    fn down_runs_once_after_up_with_the_same_environment() {
        let d = tempfile::tempdir().unwrap();
        let (up, down) = (recorder(d.path(), "up"), recorder(d.path(), "down"));
        let mac = Mac([2, 0x50, 0x56, 0, 0, 8]);
        let log = || std::fs::read_to_string(d.path().join("log")).unwrap_or_default();
        // created: nothing runs before the interface is up
        drop(Hooks::new("invpn8", mac, 1400, Some(down.clone()), false));
        assert_eq!(log(), "");
        let mut hooks = Hooks::new("invpn8", mac, 1400, Some(down.clone()), false);
        hooks.up(Some(&up));
        hooks.down();
        hooks.down();
        drop(hooks);
        let env = "invpn8 02:50:56:00:00:08 1400 /usr/sbin:/usr/bin:/sbin:/bin";
        assert_eq!(log(), format!("up {env}\ndown {env}\n"));
        // adopted after a restart in place: up is not run again, but the
        // interface goes with this process (here on drop, as for an error)
        std::fs::remove_file(d.path().join("log")).unwrap();
        drop(Hooks::new("invpn8", mac, 1400, Some(down.clone()), true));
        assert_eq!(log(), format!("down {env}\n"));
        // no program: nothing to do
        let mut none = Hooks::new("invpn8", mac, 1400, None, true);
        none.up(None);
        none.down();
    }
}
