//! The only `unsafe` code of invpnd: ioctls on the TAP device and on
//! interfaces, taking ownership of descriptors, keeping the TAP open
//! across `exec`, asking whether a directory is writable, killing a
//! process group, asking who is at the other end of a Unix socket, and
//! dropping privileges (user, groups, capabilities). Every block says why
//! it is sound.
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
    /// The interface's name.
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

/// Makes reads and writes on a descriptor return `WouldBlock` instead of
/// waiting (the TAP reader polls it; a TAP write never waits for room).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL take and return plain flags; the kernel
    // checks the descriptor.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
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

/// Takes ownership of an open descriptor of a listening Unix socket (from
/// `--controlfd`).
pub fn unix_listener_from_fd(fd: RawFd) -> io::Result<std::os::unix::net::UnixListener> {
    // SAFETY: a harmless check that the descriptor is open.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the caller hands over a descriptor it owns and does not use
    // again (from --controlfd, which a restart in place passes); it is open.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let l = std::os::unix::net::UnixListener::from(owned);
    // a descriptor that is not a listening Unix socket fails here
    l.local_addr()?;
    Ok(l)
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

/// The user id of the process at the other end of a connected Unix socket,
/// as the kernel recorded it when it connected (SO_PEERCRED).
pub fn peer_uid(fd: RawFd) -> io::Result<u32> {
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live locals that the call writes at most
    // `len` bytes to (the size of a ucred, which SO_PEERCRED fills); a bad
    // descriptor is an error return, not undefined behaviour.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred.uid)
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no memory effects.
    unsafe { libc::geteuid() }
}

/// A user account: its ids and primary group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
}

/// Looks a user up by name (or number) in the system's user database.
/// `Ok(None)`: no such user.
pub fn user_by_name(name: &str) -> io::Result<Option<Account>> {
    if let Ok(uid) = name.parse::<u32>() {
        return Ok(Some(Account { uid, gid: uid }));
    }
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: all-zero bytes are a valid `passwd` (integers and null
    // pointers), which getpwnam_r fills.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: `c` is NUL-terminated, `buf` is a live buffer of the length
    // given, `pw` and `found` are live locals; getpwnam_r writes only
    // there, and its strings point into `buf`, which we do not read.
    let r = unsafe {
        libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found)
    };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok((!found.is_null()).then_some(Account { uid: pw.pw_uid, gid: pw.pw_gid }))
}

/// Looks a group up by name (or number). `Ok(None)`: no such group.
pub fn group_by_name(name: &str) -> io::Result<Option<u32>> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Some(gid));
    }
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: all-zero bytes are a valid `group`, which getgrnam_r fills.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `user_by_name`: every pointer is to a live local or
    // buffer of the size given.
    let r = unsafe {
        libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut found)
    };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok((!found.is_null()).then_some(gr.gr_gid))
}

/// CAP_NET_BIND_SERVICE: binding ports below 1024.
pub const CAP_NET_BIND_SERVICE: u32 = 10;
/// CAP_NET_ADMIN: the interface's settings, socket buffers past the sysctl
/// limits, congestion controls not in the allowed list.
pub const CAP_NET_ADMIN: u32 = 12;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets the calling thread's capabilities to exactly `caps` (effective,
/// permitted and inheritable).
fn set_caps(caps: &[u32]) -> io::Result<()> {
    let mut data = [CapData::default(); 2];
    for &c in caps {
        let d = &mut data[(c / 32) as usize % 2];
        let bit = 1u32 << (c % 32);
        d.effective |= bit;
        d.permitted |= bit;
        d.inheritable |= bit;
    }
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    // SAFETY: capset reads a version 3 header and two data structs, both
    // live locals laid out as the kernel's (repr(C)); pid 0 is this thread.
    check(unsafe {
        libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) as libc::c_int
    })?;
    Ok(())
}

/// Drops from root to `uid`/`gid` (supplementary groups: `gid` only),
/// keeping exactly the capabilities `keep`, and raises them as ambient so
/// that a program this process executes (a restart in place, the `down`
/// program) has them too. setgroups, setgid and setuid apply to every
/// thread (the C library's wrappers signal each one); the capabilities are
/// kept by the calling thread only: other threads end with none.
pub fn drop_privileges(uid: u32, gid: u32, keep: &[u32]) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; no memory is passed.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })?;
    let groups = [gid as libc::gid_t];
    // SAFETY: `groups` is a live array of the length given, read only.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })?;
    // SAFETY: integer arguments, no memory effects.
    check(unsafe { libc::setgid(gid) })?;
    // SAFETY: integer arguments, no memory effects.
    check(unsafe { libc::setuid(uid) })?;
    set_caps(keep)?;
    for &c in keep {
        // SAFETY: prctl with integer arguments only.
        check(unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                c as libc::c_ulong,
                0,
                0,
            )
        })?;
    }
    // SAFETY: as above.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) })?;
    // root cannot be regained
    // SAFETY: integer arguments, no memory effects.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(io::Error::other("could set the user id back to root after dropping it"));
    }
    Ok(())
}

/// Whether the process `uid` with groups `gids` may read `path`, from its
/// mode bits and owner (ACLs are not consulted).
pub fn readable_by(meta: &std::fs::Metadata, uid: u32, gids: &[u32]) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    uid == 0
        || (meta.uid() == uid && mode & 0o400 != 0)
        || (gids.contains(&meta.gid()) && mode & 0o040 != 0)
        || mode & 0o004 != 0
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

// ---------------------------------------------------------------------------
// Packet sockets and a fine-grained poll, for the WAN emulator
// (examples/wanem.rs): raw Ethernet frames in and out of one interface, in
// batches (recvmmsg / sendmmsg).

const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_STATISTICS: libc::c_int = 6;
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;
/// The most frames one [`PacketSocket::recv_batch`] or
/// [`PacketSocket::send_batch`] call moves.
pub const PACKET_BATCH: usize = 64;

/// A non-blocking AF_PACKET raw socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

fn set_int_opt(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads one c_int from the pointer and length we
    // pass, which describe `v`.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// `TCP_RTO_MIN_US` and `TCP_DELACK_MAX_US` (Linux 6.15 and later).
const TCP_RTO_MIN_US: libc::c_int = 45;
const TCP_DELACK_MAX_US: libc::c_int = 46;

/// Shortens a TCP socket's loss timers: the least retransmission timeout
/// (the kernel's default is 200 ms) and the longest it delays an ACK, which
/// also bounds how long it waits before probing for the loss of a lone
/// segment in flight (1.5 round trips plus this; 200 ms by default). For a
/// connection that carries a packet or two at a time, whose losses nothing
/// behind them reveals. Kernels before 6.15 refuse both
/// (`ENOPROTOOPT`).
pub fn tcp_quick_loss_timers(fd: RawFd, rto_min_us: u32, delack_max_us: u32) -> io::Result<()> {
    let clamp = |v: u32| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
    set_int_opt(fd, libc::IPPROTO_TCP, TCP_RTO_MIN_US, clamp(rto_min_us))?;
    set_int_opt(fd, libc::IPPROTO_TCP, TCP_DELACK_MAX_US, clamp(delack_max_us))
}

impl PacketSocket {
    /// Opens a raw packet socket on interface `name` with `buf` bytes of
    /// socket buffer (past the sysctl limits when we have CAP_NET_ADMIN).
    /// With `receive`, it receives every frame that arrives on the
    /// interface (ETH_P_ALL), but not those sent from this host
    /// (PACKET_IGNORE_OUTGOING); without, it receives nothing and only
    /// sends.
    pub fn open(name: &str, receive: bool, buf: usize) -> io::Result<PacketSocket> {
        let index = if_index(name)?;
        let proto = if receive { (libc::ETH_P_ALL as u16).to_be() } else { 0 };
        // SAFETY: socket() has no memory effects; the result is checked.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        })?;
        // SAFETY: `fd` is the socket we just opened; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as libc::c_ushort;
        sa.sll_protocol = proto;
        sa.sll_ifindex = index as libc::c_int;
        // SAFETY: bind reads a sockaddr_ll of the length we pass from `sa`.
        check(unsafe {
            libc::bind(
                raw,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        let buf = libc::c_int::try_from(buf).unwrap_or(libc::c_int::MAX);
        let (force, plain) = if receive {
            set_int_opt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
            (SO_RCVBUFFORCE, libc::SO_RCVBUF)
        } else {
            (SO_SNDBUFFORCE, libc::SO_SNDBUF)
        };
        if set_int_opt(raw, libc::SOL_SOCKET, force, buf).is_err() {
            set_int_opt(raw, libc::SOL_SOCKET, plain, buf)?;
        }
        Ok(PacketSocket { fd })
    }

    /// The descriptor, for [`poll_fds`].
    pub fn raw_fd(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }

    /// How many frames the kernel dropped because the receive buffer was
    /// full since the last call (PACKET_STATISTICS, which resets them).
    pub fn take_drops(&self) -> io::Result<u64> {
        let mut st = [0u32; 2]; // struct tpacket_stats { tp_packets, tp_drops }
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes (the size of `st`)
        // into `st` and updates `len`.
        check(unsafe {
            libc::getsockopt(
                self.raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                st.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        })?;
        Ok(u64::from(st[1]))
    }

    /// Receives up to [`PACKET_BATCH`] waiting frames, one into each of
    /// `bufs`, and their lengths into `lens`. Returns how many arrived (0
    /// when none is waiting). A length above its buffer's size means the
    /// frame was truncated.
    pub fn recv_batch<B: AsMut<[u8]>>(
        &self,
        bufs: &mut [B],
        lens: &mut [usize],
    ) -> io::Result<usize> {
        let n = bufs.len().min(lens.len()).min(PACKET_BATCH);
        // SAFETY: iovec and mmsghdr are plain data; all zeroes is valid.
        let mut iov: [libc::iovec; PACKET_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; PACKET_BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            let b = bufs[i].as_mut();
            iov[i].iov_base = b.as_mut_ptr() as *mut libc::c_void;
            iov[i].iov_len = b.len();
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `n` headers each point at one iovec describing a
        // whole, writable buffer borrowed mutably for this call; the kernel
        // writes at most iov_len bytes into each and fills msg_len and
        // msg_flags. No address or control buffers are passed.
        let r = unsafe {
            libc::recvmmsg(
                self.raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = r as usize;
        for (l, m) in lens.iter_mut().zip(&msgs[..got]) {
            *l = m.msg_len as usize;
        }
        Ok(got)
    }

    /// Sends up to [`PACKET_BATCH`] of `frames`, each a whole Ethernet
    /// frame, out of the bound interface. Returns how many went (0 when
    /// the socket buffer is full); an error concerns the first unsent
    /// frame.
    pub fn send_batch<B: AsRef<[u8]>>(&self, frames: &[B]) -> io::Result<usize> {
        let n = frames.len().min(PACKET_BATCH);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: iovec and mmsghdr are plain data; all zeroes is valid.
        let mut iov: [libc::iovec; PACKET_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; PACKET_BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            let f = frames[i].as_ref();
            iov[i].iov_base = f.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = f.len();
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `n` headers each point at one iovec describing a
        // frame borrowed for this call; sendmmsg only reads them (the
        // pointer is cast to mut only because iovec is shared with reads)
        // and writes msg_len.
        let r = unsafe {
            libc::sendmmsg(self.raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT)
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (None: forever),
/// with nanosecond resolution (ppoll; the kernel adds the thread's timer
/// slack, 50 µs by default). Returns how many descriptors are ready (0 on
/// timeout or signal); the `revents` are set.
pub fn poll_fds(
    fds: &mut [libc::pollfd],
    timeout: Option<std::time::Duration>,
) -> io::Result<usize> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: ppoll reads and writes the `fds.len()` pollfd entries of the
    // slice, which we borrow mutably; it reads the timespec if not null;
    // a null signal mask leaves the mask alone.
    let r =
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, tsp, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
    }
    Ok(r as usize)
}

// ---------------------------------------------------------------- terminal

/// A terminal put in "cbreak" mode (keys arrive one at a time, not
/// echoed; Ctrl-C still signals) until this is dropped, which restores
/// the settings it found.
pub struct CbreakTerminal {
    fd: RawFd,
    saved: libc::termios,
}

impl CbreakTerminal {
    /// Puts the terminal on `fd` in cbreak mode; an error if `fd` is not a
    /// terminal.
    pub fn enter(fd: RawFd) -> io::Result<CbreakTerminal> {
        // SAFETY: termios is plain data (integers and arrays); all zero is
        // a valid value, which tcgetattr overwrites.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, writable termios; tcgetattr fails
        // (ENOTTY, EBADF) without writing if fd is not a terminal.
        check(unsafe { libc::tcgetattr(fd, &mut saved) })?;
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO);
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `raw` is a valid termios read from this terminal and
        // changed in flags only; tcsetattr reads it.
        check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) })?;
        Ok(CbreakTerminal { fd, saved })
    }
}

impl Drop for CbreakTerminal {
    fn drop(&mut self) {
        // SAFETY: `saved` is the termios tcgetattr gave for this fd;
        // tcsetattr only reads it.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

// ---------------------------------------------------------------- TCP_INFO

/// What the kernel says about a TCP connection (`TCP_INFO`), the fields
/// invpnd uses. Fields an older kernel does not fill are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Smoothed round-trip time (µs).
    pub rtt_us: u32,
    /// Its mean deviation (µs).
    pub rttvar_us: u32,
    /// The lowest round trip seen recently (µs; Linux 4.6+).
    pub min_rtt_us: u32,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
    /// Of those, segments the peer acknowledged selectively (SACK).
    pub sacked: u32,
    /// Of those, segments considered lost.
    pub lost: u32,
    /// Segments retransmitted and not yet acknowledged.
    pub retrans: u32,
    /// The sender's maximum segment size.
    pub snd_mss: u32,
    /// Congestion window (segments).
    pub snd_cwnd: u32,
    /// Bytes written but not yet sent (Linux 4.6+).
    pub notsent_bytes: u32,
    /// The most recent delivery rate sample (bytes/s; Linux 4.9+).
    pub delivery_rate: u64,
    /// Whether that sample was limited by the application, not the path.
    pub delivery_rate_app_limited: bool,
    /// Bytes acknowledged so far.
    pub bytes_acked: u64,
    /// Segments retransmitted so far.
    pub total_retrans: u32,
}

impl TcpInfo {
    /// Segments in the network now, as the kernel counts them
    /// (`tcp_packets_in_flight`): unacknowledged, less those SACKed or
    /// lost, plus retransmissions.
    pub fn in_flight(&self) -> u32 {
        self.unacked.saturating_sub(self.sacked + self.lost) + self.retrans
    }
}

/// Reads `TCP_INFO` of a TCP socket.
pub fn tcp_info(fd: RawFd) -> io::Result<TcpInfo> {
    let mut buf = [0u8; 232];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes and `len` says so; the
    // kernel writes at most `len` bytes and updates `len` to what it wrote.
    check(unsafe {
        libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, buf.as_mut_ptr().cast(), &mut len)
    })?;
    let got = &buf[..(len as usize).min(buf.len())];
    let u32_at = |o: usize| {
        got.get(o..o + 4).map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap_or_default()))
    };
    let u64_at = |o: usize| {
        got.get(o..o + 8).map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
    };
    // offsets of struct tcp_info in linux/tcp.h
    Ok(TcpInfo {
        delivery_rate_app_limited: got.get(7).is_some_and(|b| b & 1 != 0),
        snd_mss: u32_at(16),
        unacked: u32_at(24),
        sacked: u32_at(28),
        lost: u32_at(32),
        retrans: u32_at(36),
        rtt_us: u32_at(68),
        rttvar_us: u32_at(72),
        snd_cwnd: u32_at(80),
        total_retrans: u32_at(100),
        bytes_acked: u64_at(120),
        notsent_bytes: u32_at(144),
        min_rtt_us: u32_at(148),
        delivery_rate: u64_at(160),
    })
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
    fn tcp_info_of_a_loopback_connection() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(&[7u8; 100_000]).unwrap();
        let mut got = vec![0u8; 100_000];
        s.read_exact(&mut got).unwrap();
        s.write_all(b"x").unwrap();
        let mut one = [0u8];
        c.read_exact(&mut one).unwrap();
        let i = tcp_info(c.as_raw_fd()).unwrap();
        assert!(i.snd_mss > 500, "{i:?}");
        assert!(
            i.rtt_us > 0 && i.min_rtt_us > 0 && i.min_rtt_us <= i.rtt_us + i.rttvar_us,
            "{i:?}"
        );
        assert!(i.bytes_acked >= 100_000, "{i:?}");
        assert!(i.snd_cwnd >= 10, "{i:?}");
        assert!(tcp_info(-1).is_err());
        let f = tempfile::tempfile().unwrap();
        assert!(tcp_info(f.as_raw_fd()).is_err());
    }

    #[test]
    fn cbreak_needs_a_terminal() {
        let f = tempfile::tempfile().unwrap();
        use std::os::fd::AsRawFd;
        assert!(CbreakTerminal::enter(f.as_raw_fd()).is_err());
        assert!(CbreakTerminal::enter(-1).is_err());
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
