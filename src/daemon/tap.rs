//! The TAP interface and the threads that do its blocking I/O: one reads
//! frames and hands them to the engine and the workers, one writes the
//! frames the workers deliver.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{error, info, warn};

use super::channels::{ToSupervisor, ToWorker};
use super::Shared;
use crate::config::Interface;
use crate::core::stats::{Counter, DropReason};
use crate::core::wire::FRAME_HEADROOM;
use crate::core::{Mac, TapAction};

/// An open TAP interface.
pub struct Tap {
    pub dev: Arc<tun_rs::SyncDevice>,
    pub name: String,
    pub mtu: u16,
    pub ifindex: u32,
}

/// Why the TAP could not be set up.
#[derive(Debug)]
pub struct TapError(pub String);

impl std::fmt::Display for TapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Tap {
    /// Creates the interface (no packet-info header), sets its MAC and MTU
    /// and brings it up.
    pub fn create(cfg: &Interface, mac: Mac) -> Result<Tap, TapError> {
        let dev = tun_rs::DeviceBuilder::new()
            .name(cfg.name.clone())
            .layer(tun_rs::Layer::L2)
            .mac_addr(mac.0)
            .mtu(cfg.mtu)
            .enable(true)
            .build_sync()
            .map_err(|e| TapError(format!("cannot create TAP interface {}: {e}", cfg.name)))?;
        Tap::describe(dev)
    }

    /// Adopts a TAP already open on `fd` (from `--tunfd`, after a restart in
    /// place): same interface, still up, addresses kept; the MTU is set if
    /// the configuration changed it.
    pub fn adopt(fd: RawFd, mac: Mac, mtu: u16) -> Result<Tap, TapError> {
        let dev = crate::sys::adopt_tap(fd)
            .map_err(|e| TapError(format!("--tunfd {fd}: not an open TAP interface: {e}")))?;
        let mut tap = Tap::describe(dev)?;
        if tap.mtu != mtu {
            tap.dev
                .set_mtu(mtu)
                .map_err(|e| TapError(format!("{}: cannot set MTU {mtu}: {e}", tap.name)))?;
            info!("{}: MTU changed from {} to {mtu}", tap.name, tap.mtu);
            tap.mtu = mtu;
        }
        let have =
            tap.dev.mac_address().map(Mac).map_err(|e| TapError(format!("{}: {e}", tap.name)))?;
        if have != mac {
            tap.dev
                .set_mac_address(mac.0)
                .map_err(|e| TapError(format!("{}: cannot set MAC {mac}: {e}", tap.name)))?;
        }
        Ok(tap)
    }

    fn describe(dev: tun_rs::SyncDevice) -> Result<Tap, TapError> {
        let name = dev.name().map_err(|e| TapError(format!("TAP interface name: {e}")))?;
        let mtu = dev.mtu().map_err(|e| TapError(format!("{name}: MTU: {e}")))?;
        let ifindex = dev.if_index().map_err(|e| TapError(format!("{name}: ifindex: {e}")))?;
        Ok(Tap { dev: Arc::new(dev), name, mtu, ifindex })
    }

    /// The descriptor (for `--tunfd` on restart).
    pub fn fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}

/// Runs the operator's `up` program with `INTERFACE` and `MAC` set, waiting
/// at most 30 s for it.
pub fn run_up(program: &std::path::Path, iface: &str, mac: Mac) {
    let mut child = match std::process::Command::new(program)
        .env("INTERFACE", iface)
        .env("MAC", mac.to_string())
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            error!("up program {}: cannot run: {e}", program.display());
            return;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => {
                info!("up program {} done", program.display());
                return;
            }
            Ok(Some(st)) => {
                warn!("up program {} failed: {st}", program.display());
                return;
            }
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                warn!("up program {} killed after 30 s", program.display());
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                warn!("up program {}: {e}", program.display());
                return;
            }
        }
    }
}

/// The reading thread: frames from the TAP become messages for links.
pub fn reader(dev: Arc<tun_rs::SyncDevice>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; FRAME_HEADROOM + 65536];
    loop {
        let n = match dev.recv(&mut buf[FRAME_HEADROOM..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                shared
                    .supervisor
                    .send(ToSupervisor::Fatal(format!("reading the TAP interface: {e}")));
                return;
            }
        };
        let now = shared.clock.now();
        match shared.engine.tap_frame(&mut buf, n, now) {
            TapAction::Unicast { link, msg } => {
                let ok = shared
                    .workers
                    .get(link.worker())
                    .is_some_and(|w| w.send_data(ToWorker::Send { link, msg: buf[msg].to_vec() }));
                if !ok {
                    shared.engine.stats().drop(DropReason::QueueFull);
                }
            }
            TapAction::Flood { msg } => {
                let msg: Arc<[u8]> = buf[msg].into();
                for w in &shared.workers {
                    if !w.send_data(ToWorker::Flood {
                        except: None,
                        msg: msg.clone(),
                        ext_only: false,
                    }) {
                        shared.engine.stats().drop(DropReason::QueueFull);
                    }
                }
            }
            TapAction::Drop(_) => {}
        }
    }
}

/// The writing thread: frames delivered by workers go to the TAP.
pub fn writer(dev: Arc<tun_rs::SyncDevice>, rx: Receiver<Vec<u8>>, shared: Arc<Shared>) {
    let stats = shared.engine.stats();
    while let Ok(frame) = rx.recv() {
        match dev.send(&frame) {
            Ok(_) => {
                stats.add(Counter::TapFramesOut, 1);
                stats.add(Counter::TapBytesOut, frame.len() as u64);
            }
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
                shared
                    .supervisor
                    .send(ToSupervisor::Fatal(format!("writing the TAP interface: {e}")));
                return;
            }
            // The interface is down, or the frame was refused: drop it.
            Err(_) => stats.drop(DropReason::BadFrame),
        }
    }
}
