//! Sockets: the listener, outgoing connections, and the TCP options every
//! link gets (PROTOCOL.md §2: TCP_NODELAY and keepalive; plus
//! TCP_USER_TIMEOUT so a stuck send fails, and TCP_NOTSENT_LOWAT so that
//! data waits in our bounded queues rather than deep in the kernel).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, TcpKeepalive, Type};

/// TCP settings derived from the announce interval.
#[derive(Debug, Clone, Copy)]
pub struct TcpTuning {
    /// Unacknowledged data older than this kills the connection.
    pub user_timeout: Duration,
    /// Idle time before keepalive probes.
    pub keepalive: Duration,
    /// Unsent bytes the kernel may hold per socket.
    pub notsent_lowat: u32,
}

/// Applies the link options to a connected or connecting socket.
pub fn tune(sock: &SockRef<'_>, t: &TcpTuning) -> io::Result<()> {
    sock.set_tcp_nodelay(true)?;
    let ka = TcpKeepalive::new()
        .with_time(t.keepalive)
        .with_interval(Duration::from_secs(1).max(t.keepalive / 5))
        .with_retries(3);
    sock.set_tcp_keepalive(&ka)?;
    sock.set_keepalive(true)?;
    sock.set_tcp_user_timeout(Some(t.user_timeout))?;
    // Not every kernel has it; the link works without.
    let _ = sock.set_tcp_notsent_lowat(t.notsent_lowat);
    Ok(())
}

/// Listens on `bind:port`; with no address, on every IPv6 and IPv4 address
/// (falling back to IPv4 only where IPv6 is disabled).
pub fn listen(bind: Option<IpAddr>, port: u16) -> io::Result<(mio::net::TcpListener, SocketAddr)> {
    let addrs: Vec<SocketAddr> = match bind {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        ],
    };
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to listen on");
    for (i, addr) in addrs.iter().enumerate() {
        match listen_on(*addr, bind.is_none()) {
            Ok(l) => return Ok((l, *addr)),
            // Only IPv6 being unavailable falls back to IPv4; "in use" is final.
            Err(e) if i + 1 < addrs.len() && e.kind() != io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn listen_on(addr: SocketAddr, dual_stack: bool) -> io::Result<mio::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    if addr.is_ipv6() && dual_stack {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(mio::net::TcpListener::from_std(s.into()))
}

/// Starts a non-blocking connection to `addr`.
pub fn connect(addr: SocketAddr, t: &TcpTuning) -> io::Result<mio::net::TcpStream> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    tune(&SockRef::from(&s), t)?;
    match s.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(s.into()))
}

/// An address as a peer announces it: IPv4-mapped IPv6 as IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
