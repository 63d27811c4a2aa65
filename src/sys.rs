//! The only `unsafe` code of invpnd: ioctls on the TAP device and on
//! interfaces, taking ownership of descriptors, keeping the TAP open
//! across `exec`, asking whether a directory is writable and killing a
//! process group. Every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What TUNGETIFF says about a TUN/TAP descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunInfo {
    pub name: String,
    /// Whether it is a TAP (Ethernet frames), not a TUN.
    pub tap: bool,
    /// Whether reads and writes carry a virtio-net header.
    pub vnet_hdr: bool,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Asks a descriptor what TUN/TAP interface it is attached to.
pub fn tun_info(fd: RawFd) -> io::Result<TunInfo> {
    // SAFETY: F_GETFD only reads the descriptor flags; an invalid
    // descriptor fails with EBADF.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes an ifreq into the memory we pass, which is a
    // whole, writable ifreq; a descriptor that is not a TUN/TAP fails with
    // EBADFD or ENOTTY.
    check(unsafe { libc::ioctl(fd, libc::TUNGETIFF, &mut req as *mut libc::ifreq) })?;
    // SAFETY: the kernel filled ifr_name with a NUL-terminated name of at
    // most IFNAMSIZ bytes, and ifr_flags as the device's flags.
    let (name, flags) = unsafe {
        (
            CStr::from_ptr(req.ifr_name.as_ptr()).to_string_lossy().into_owned(),
            req.ifr_ifru.ifru_flags,
        )
    };
    let flags = i32::from(flags);
    Ok(TunInfo { name, tap: flags & libc::IFF_TAP != 0, vnet_hdr: flags & libc::IFF_VNET_HDR != 0 })
}

/// Sets the offloads the TAP may hand us (TUNSETOFFLOAD): checksum and TCP
/// segmentation, nothing else (no UDP segmentation, which we do not
/// segment in software).
pub fn tun_set_offload(fd: RawFd, tcp: bool) -> io::Result<()> {
    let flags: libc::c_uint =
        if tcp { libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 } else { 0 };
    // SAFETY: TUNSETOFFLOAD takes the flags by value; the kernel checks the
    // descriptor and the flags.
    check(unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, flags as libc::c_ulong) })?;
    Ok(())
}

/// Takes ownership of an open descriptor as a `File` (for plain read and
/// write on a TAP).
pub fn file_from_fd(fd: RawFd) -> io::Result<File> {
    // SAFETY: as in tun_info, a harmless check that the descriptor is open.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the caller hands over a descriptor it owns and does not use
    // again (from --tunfd, or from tun-rs's into_raw_fd); it is open.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Lets `fd` survive `exec` (clears FD_CLOEXEC).
pub fn keep_across_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only read and write the flags of `fd`.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Whether this process may create files in the directory `dir`: access
/// for writing and searching, with its effective user and groups (what
/// creating a file there will be checked against; a read-only file system
/// counts as not writable).
pub fn can_create_in(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a NUL-terminated string that outlives the call, which
    // only reads it; faccessat has no other memory effects.
    let r = unsafe {
        libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK | libc::X_OK, libc::AT_EACCESS)
    };
    r == 0
}

/// Sends SIGKILL to every process of the process group `pgid` (one that a
/// child was started in with `process_group(0)`: its id is the child's).
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad process group"))?;
    // SAFETY: kill has no memory effects. `-pgid` is below -1, so it names
    // exactly the process group `pgid`: never every process (-1) nor our
    // own group (0).
    check(unsafe { libc::kill(-pgid, libc::SIGKILL) })?;
    Ok(())
}

/// An ifreq naming `name`, for the SIOC*IF* ioctls.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// Runs an interface ioctl on a throw-away datagram socket.
fn if_ioctl(request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: socket() has no memory effects; the result is checked.
    let s =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `s` is a socket we just opened and own; OwnedFd closes it.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: the request reads and writes one ifreq, which `req` is.
    let r = check(unsafe { libc::ioctl(s, request, req as *mut libc::ifreq) });
    drop(sock);
    r.map(|_| ())
}

/// The MTU of interface `name`.
pub fn if_mtu(name: &str) -> io::Result<u32> {
    let mut req = ifreq(name)?;
    if_ioctl(libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: SIOCGIFMTU filled the ifru_mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::other(format!("MTU {mtu} out of range")))
}

/// Sets the MTU of interface `name`.
pub fn if_set_mtu(name: &str, mtu: u16) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
    if_ioctl(libc::SIOCSIFMTU, &mut req)
}

/// The index of interface `name`.
pub fn if_index(name: &str) -> io::Result<u32> {
    let mut req = ifreq(name)?;
    if_ioctl(libc::SIOCGIFINDEX, &mut req)?;
    // SAFETY: SIOCGIFINDEX filled the ifru_ifindex member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
}

/// The hardware (MAC) address of interface `name`.
pub fn if_hwaddr(name: &str) -> io::Result<[u8; 6]> {
    let mut req = ifreq(name)?;
    if_ioctl(libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled the ifru_hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_readable_and_bad_names_refused() {
        assert!(if_mtu("lo").is_ok_and(|m| m > 0));
        assert!(if_index("lo").is_ok_and(|i| i > 0));
        assert!(if_mtu("").is_err());
        assert!(if_mtu("a-name-much-too-long-for-linux").is_err());
        assert!(if_mtu("no-such-if0").is_err());
    }

    #[test]
    fn writable_directories() {
        let d = tempfile::tempdir().unwrap();
        assert!(can_create_in(d.path()));
        assert!(!can_create_in(&d.path().join("missing")));
        assert!(kill_process_group(0).is_err() && kill_process_group(1).is_err());
    }

    #[test]
    fn a_regular_file_is_not_a_tap() {
        let f = tempfile::tempfile().unwrap();
        use std::os::fd::AsRawFd;
        assert!(tun_info(f.as_raw_fd()).is_err());
        assert!(tun_info(-1).is_err());
    }
}
