//! The only `unsafe` code of invpnd: adopting a TAP descriptor and keeping
//! it open across `exec`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// Wraps an already open TAP descriptor (inherited through `--tunfd`).
pub fn adopt_tap(fd: RawFd) -> io::Result<tun_rs::SyncDevice> {
    // fcntl(F_GETFD) checks that the descriptor is open before anything
    // takes ownership of it.
    // SAFETY: F_GETFD only reads the descriptor flags of `fd`; an invalid
    // descriptor makes it fail with EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above), was inherited for exactly this
    // purpose and is used by nothing else in this process; tun-rs takes
    // ownership and validates with TUNGETIFF that it is a TUN/TAP device
    // without IFF_VNET_HDR, as its contract requires.
    unsafe { tun_rs::SyncDevice::from_fd(fd) }
}

/// Lets `fd` survive `exec` (clears FD_CLOEXEC).
pub fn keep_across_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only read and write the flags of `fd`.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
