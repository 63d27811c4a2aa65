//! Sockets: the listener, outgoing connections, and the TCP options every
//! link gets (PROTOCOL.md §2: TCP_NODELAY and keepalive; plus
//! TCP_USER_TIMEOUT so a stuck send fails, TCP_NOTSENT_LOWAT so that data
//! waits in our bounded queues rather than deep in the kernel, and the
//! congestion control `[network] congestion` chose).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, TcpKeepalive, Type};

use crate::config::Congestion;

/// The default congestion control, used where the kernel offers it: inner
/// flows share one outer TCP connection, and on lossy paths BBR keeps its
/// rate where loss-based algorithms (reno, cubic) back off for all of them.
pub const DEFAULT_CONGESTION: &str = "bbr";

/// TCP settings derived from the announce interval.
#[derive(Debug, Clone, Copy)]
pub struct TcpTuning {
    /// Unacknowledged data older than this kills the connection.
    pub user_timeout: Duration,
    /// Idle time before keepalive probes.
    pub keepalive: Duration,
    /// Unsent bytes the kernel may hold per socket.
    pub notsent_lowat: u32,
    /// The congestion control to set; `None` leaves the kernel's default.
    pub congestion: Option<CaName>,
}

impl TcpTuning {
    /// The options for links of a node announcing every `interval`.
    pub fn new(interval: Duration, notsent_lowat: u32, congestion: Option<CaName>) -> TcpTuning {
        TcpTuning {
            // never below a few retransmission timeouts
            user_timeout: (interval * 3).max(Duration::from_secs(10)),
            keepalive: interval.max(Duration::from_secs(1)),
            notsent_lowat,
            congestion,
        }
    }
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
    if let Some(ca) = &t.congestion {
        set_congestion(sock, ca)?;
    }
    Ok(())
}

/// A TCP congestion control's name as the kernel takes it: at most 15
/// bytes (TCP_CA_NAME_MAX is 16 with the NUL). `Copy`, so that
/// [`TcpTuning`] stays plain data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CaName {
    buf: [u8; Congestion::NAME_MAX],
    len: u8,
}

impl CaName {
    /// `None` if `name` is empty, too long or not ASCII.
    pub fn new(name: &str) -> Option<CaName> {
        if name.is_empty() || name.len() > Congestion::NAME_MAX || !name.is_ascii() {
            return None;
        }
        let mut buf = [0; Congestion::NAME_MAX];
        buf[..name.len()].copy_from_slice(name.as_bytes());
        Some(CaName { buf, len: name.len() as u8 })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // built from a &str of ASCII only
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Display for CaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Sets a socket's congestion control; the error names the algorithm.
pub fn set_congestion(sock: &Socket, ca: &CaName) -> io::Result<()> {
    sock.set_tcp_congestion(ca.as_str().as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("TCP congestion control {ca}: {e}")))
}

/// A socket's congestion control, read back from the kernel.
pub fn congestion_of(sock: &Socket) -> io::Result<String> {
    let raw = sock.tcp_congestion()?;
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    Ok(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// Where the congestion control of link sockets came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CongestionSource {
    /// `[network] congestion` names it.
    Configured,
    /// Not configured: the default, [`DEFAULT_CONGESTION`].
    Default,
    /// `congestion = system`.
    System,
    /// Not configured, and the default is unavailable (why): the system's.
    SystemFallback(String),
}

/// The congestion control link sockets get, resolved on a probe socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CongestionControl {
    /// What is set on every link socket; `None`: nothing, the kernel's
    /// default applies.
    pub set: Option<CaName>,
    /// The algorithm a link socket gets, read back from the probe socket.
    pub actual: String,
    /// Why this one.
    pub source: CongestionSource,
}

impl CongestionControl {
    /// Why this algorithm, in a few words: `configured`, `default`,
    /// `system default`, `system default; bbr unavailable`.
    pub fn source_text(&self) -> String {
        match &self.source {
            CongestionSource::Configured => "configured".into(),
            CongestionSource::Default => "default".into(),
            CongestionSource::System => "system default".into(),
            CongestionSource::SystemFallback(_) => {
                format!("system default; {DEFAULT_CONGESTION} unavailable")
            }
        }
    }
}

impl fmt::Display for CongestionControl {
    /// `bbr (configured)`, `cubic (system default; bbr unavailable: why)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            CongestionSource::SystemFallback(why) => write!(
                f,
                "{} (system default; {DEFAULT_CONGESTION} unavailable: {why})",
                self.actual
            ),
            _ => write!(f, "{} ({})", self.actual, self.source_text()),
        }
    }
}

/// A TCP socket that is never connected, to try options on.
fn probe_socket() -> io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::STREAM.cloexec(), Some(Protocol::TCP))
        .or_else(|_| Socket::new(Domain::IPV6, Type::STREAM.cloexec(), Some(Protocol::TCP)))
}

/// A /proc/sys/net/ipv4 list, for error messages.
fn sysctl_list(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Why `name` cannot be set, in terms an operator can act on.
fn explain(name: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "the kernel has no TCP congestion control {name:?}: it is not among those \
             available ({}), and no module tcp_{name} was loaded (only a process with \
             CAP_NET_ADMIN can have one loaded)",
            sysctl_list("tcp_available_congestion_control")
        ),
        Some(libc::EPERM) => format!(
            "{name:?} is not permitted: without CAP_NET_ADMIN only those in \
             net.ipv4.tcp_allowed_congestion_control ({}) may be used",
            sysctl_list("tcp_allowed_congestion_control")
        ),
        _ => format!("cannot set TCP congestion control {name:?} on a socket: {e}"),
    }
}

/// Resolves `[network] congestion` by trying it on a probe socket in this
/// network namespace, as root may load a module that is available but not
/// loaded. A configured algorithm that cannot be set is an error (the
/// reason); an unavailable default falls back to the system's.
pub fn resolve_congestion(c: &Congestion) -> Result<CongestionControl, String> {
    let probe = probe_socket().map_err(|e| format!("cannot open a TCP socket: {e}"))?;
    let read_back = |s: &Socket| {
        congestion_of(s).map_err(|e| format!("cannot read a socket's congestion control: {e}"))
    };
    let (set, source) = match c {
        Congestion::System => (None, CongestionSource::System),
        Congestion::Named(name) => {
            let ca = CaName::new(name).ok_or_else(|| format!("{name:?}: not a valid name"))?;
            probe.set_tcp_congestion(name.as_bytes()).map_err(|e| explain(name, &e))?;
            (Some(ca), CongestionSource::Configured)
        }
        Congestion::Default => match probe.set_tcp_congestion(DEFAULT_CONGESTION.as_bytes()) {
            Ok(()) => (CaName::new(DEFAULT_CONGESTION), CongestionSource::Default),
            Err(e) => (None, CongestionSource::SystemFallback(explain(DEFAULT_CONGESTION, &e))),
        },
    };
    Ok(CongestionControl { set, actual: read_back(&probe)?, source })
}

/// Listens on `bind:port`; with no address, on every IPv6 and IPv4 address
/// (falling back to IPv4 only where IPv6 is disabled). The listener gets
/// the congestion control `congestion`, which accepted sockets inherit.
pub fn listen(
    bind: Option<IpAddr>,
    port: u16,
    congestion: Option<CaName>,
) -> io::Result<(mio::net::TcpListener, SocketAddr)> {
    let addrs: Vec<SocketAddr> = match bind {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        ],
    };
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to listen on");
    for (i, addr) in addrs.iter().enumerate() {
        match listen_on(*addr, bind.is_none(), congestion) {
            Ok(l) => return Ok((l, *addr)),
            // Only IPv6 being unavailable falls back to IPv4; "in use" is final.
            Err(e) if i + 1 < addrs.len() && e.kind() != io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn listen_on(
    addr: SocketAddr,
    dual_stack: bool,
    congestion: Option<CaName>,
) -> io::Result<mio::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    if addr.is_ipv6() && dual_stack {
        s.set_only_v6(false)?;
    }
    if let Some(ca) = &congestion {
        set_congestion(&s, ca)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reno() -> Option<CaName> {
        CaName::new("reno")
    }

    #[test]
    fn names() {
        assert_eq!(CaName::new("bbr").unwrap().as_str(), "bbr");
        assert_eq!(CaName::new("fifteen_chars__").unwrap().to_string(), "fifteen_chars__");
        assert!(CaName::new("sixteen_chars___").is_none());
        assert!(CaName::new("").is_none());
    }

    /// Dialled and accepted sockets get the algorithm (reno is built into
    /// every kernel), the listener too, on loopback.
    #[test]
    fn link_sockets_get_the_congestion_control() {
        let loopback = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (listener, _) = listen(loopback, 0, reno()).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(congestion_of(&SockRef::from(&listener)).unwrap(), "reno");
        let t = TcpTuning::new(Duration::from_secs(5), 128 * 1024, reno());
        let dialled = connect(addr, &t).unwrap();
        assert_eq!(congestion_of(&SockRef::from(&dialled)).unwrap(), "reno");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let accepted = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "no connection accepted");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        // inherited from the listener, before any tuning
        assert_eq!(congestion_of(&SockRef::from(&accepted)).unwrap(), "reno");
        tune(&SockRef::from(&accepted), &t).unwrap();
        assert_eq!(congestion_of(&SockRef::from(&accepted)).unwrap(), "reno");
        assert_eq!(t.notsent_lowat, 128 * 1024);
    }

    #[test]
    fn resolving() {
        let c = resolve_congestion(&Congestion::Named("reno".into())).unwrap();
        assert_eq!((c.set, c.actual.as_str()), (reno(), "reno"));
        assert_eq!(c.to_string(), "reno (configured)");
        // the system's: nothing set, the kernel's default read back
        let c = resolve_congestion(&Congestion::System).unwrap();
        assert_eq!(c.set, None);
        assert_eq!(c.source, CongestionSource::System);
        let fresh = probe_socket().unwrap();
        assert_eq!(c.actual, congestion_of(&fresh).unwrap());
        // the default: bbr, or the system's (with the reason) without it
        let c = resolve_congestion(&Congestion::Default).unwrap();
        match &c.source {
            CongestionSource::Default => assert_eq!(c.actual, "bbr"),
            CongestionSource::SystemFallback(why) => {
                assert!(c.set.is_none() && why.contains("bbr"), "{c}")
            }
            other => panic!("{other:?}"),
        }
        let e = resolve_congestion(&Congestion::Named("no_such_cc".into())).unwrap_err();
        assert!(e.contains("\"no_such_cc\""), "{e}");
    }
}
