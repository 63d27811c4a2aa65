//! The metrics listener (`[control] metrics = ADDR:PORT`): a small HTTP/1.x
//! server in the supervisor's event loop, like the control socket. It
//! answers `GET /metrics` (and `HEAD`) with the exposition of
//! [`crate::control::metrics`], one request per connection; other paths
//! get 404, other methods 405. Requests are bounded in size and time,
//! clients in number, and no thread is started.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::supervisor::Supervisor;
use crate::config::Config;
use crate::control::metrics::{self, CONTENT_TYPE};

/// Token of the metrics listener; clients get tokens in `CLIENTS..END`
/// (below the control socket's).
pub const LISTENER: Token = Token(4);
const CLIENTS: usize = 1 << 16;
const END: usize = 1 << 20;
/// Most clients served at once; more are answered 503 and closed.
const MAX_CLIENTS: usize = 16;
/// Longest request head (request line and headers) read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request (ms).
const REQUEST_TIMEOUT: u64 = 5_000;
/// How long an answer may wait for its client to read it (ms).
const WRITE_TIMEOUT: u64 = 10_000;

/// What a request head asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed.
    Incomplete,
    /// The metrics.
    Metrics {
        /// False for HEAD.
        body: bool,
    },
    /// An answer other than the metrics: status line and text.
    Error(u16, &'static str),
}

/// Reads a request head from what the client sent so far.
pub fn parse_head(buf: &[u8]) -> Head {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).or_else(|| {
        // bare LF line ends, as some tools send
        buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
    });
    let Some(end) = end else {
        return if buf.len() > MAX_HEAD {
            Head::Error(431, "Request Header Fields Too Large")
        } else {
            Head::Incomplete
        };
    };
    if end > MAX_HEAD {
        return Head::Error(431, "Request Header Fields Too Large");
    }
    let first = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(first) else {
        return Head::Error(400, "Bad Request");
    };
    let parts: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Head::Error(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Head::Error(505, "HTTP Version Not Supported");
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Head::Metrics { body: method == "GET" },
        ("GET" | "HEAD", _) => Head::Error(404, "Not Found"),
        _ => Head::Error(405, "Method Not Allowed"),
    }
}

/// A whole HTTP/1.1 response (the connection closes after it).
pub fn response(
    code: u16,
    reason: &str,
    content_type: &str,
    body: &str,
    send_body: bool,
) -> Vec<u8> {
    let allow = if code == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let mut r = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if send_body {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

fn error_response(code: u16, reason: &str) -> Vec<u8> {
    response(code, reason, "text/plain; charset=utf-8", &format!("{code} {reason}\n"), true)
}

struct Client {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    written: usize,
    since: u64,
    /// Since when the answer has waited for the client.
    answered: Option<u64>,
}

/// The listening socket and its clients.
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
    clients: HashMap<Token, Client>,
    next: usize,
}

impl MetricsServer {
    /// Binds `addr` (SO_REUSEADDR, so that a restart in place can bind it
    /// again at once).
    pub fn bind(addr: SocketAddr) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        Ok(MetricsServer { listener, addr, clients: HashMap::new(), next: CLIENTS })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether `t` is one of the metrics listener's tokens.
    pub fn owns(t: Token) -> bool {
        t == LISTENER || (CLIENTS..END).contains(&t.0)
    }

    fn token(&mut self) -> Token {
        loop {
            let t = Token(self.next);
            self.next = if self.next + 1 >= END { CLIENTS } else { self.next + 1 };
            if !self.clients.contains_key(&t) {
                return t;
            }
        }
    }

    fn accept(&mut self, r: &Registry, now: u64) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, from)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        debug!("metrics: {from} refused, {MAX_CLIENTS} clients already");
                        let _ = stream.write_all(&error_response(503, "Service Unavailable"));
                        continue;
                    }
                    let t = self.token();
                    if r.register(&mut stream, t, Interest::READABLE).is_ok() {
                        let c = Client {
                            stream,
                            rbuf: Vec::new(),
                            wbuf: Vec::new(),
                            written: 0,
                            since: now,
                            answered: None,
                        };
                        self.clients.insert(t, c);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("metrics listener {}: accept: {e}", self.addr);
                    return;
                }
            }
        }
    }

    /// Reads what client `t` sent; its request head, once complete (or
    /// `None` while incomplete, or after the client went away).
    fn read(&mut self, r: &Registry, t: Token) -> Option<Head> {
        let c = self.clients.get_mut(&t)?;
        if c.answered.is_some() {
            // one request per connection: the rest is read and ignored
            let mut sink = [0u8; 1024];
            while matches!(c.stream.read(&mut sink), Ok(n) if n > 0) {}
            return None;
        }
        let mut buf = [0u8; 2048];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    self.drop_client(r, t);
                    return None;
                }
                Ok(n) => {
                    c.rbuf.extend_from_slice(&buf[..n]);
                    match parse_head(&c.rbuf) {
                        Head::Incomplete => continue,
                        head => return Some(head),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_client(r, t);
                    return None;
                }
            }
        }
    }

    /// Queues the answer for client `t` and writes what the socket takes.
    fn answer(&mut self, r: &Registry, t: Token, bytes: Vec<u8>, now: u64) {
        if let Some(c) = self.clients.get_mut(&t) {
            c.wbuf = bytes;
            c.written = 0;
            c.answered = Some(now);
            let _ = r.reregister(&mut c.stream, t, Interest::READABLE | Interest::WRITABLE);
        }
        self.flush(r, t);
    }

    fn flush(&mut self, r: &Registry, t: Token) {
        let Some(c) = self.clients.get_mut(&t) else { return };
        if c.answered.is_none() {
            return;
        }
        while c.written < c.wbuf.len() {
            match c.stream.write(&c.wbuf[c.written..]) {
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        // all written (or the client is gone): close our side; whatever
        // the client still sent is read first, so that the close is a FIN,
        // not a reset that could cut the answer short
        let mut sink = [0u8; 1024];
        while matches!(c.stream.read(&mut sink), Ok(n) if n > 0) {}
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        self.drop_client(r, t);
    }

    fn drop_client(&mut self, r: &Registry, t: Token) {
        if let Some(mut c) = self.clients.remove(&t) {
            let _ = r.deregister(&mut c.stream);
        }
    }

    /// Ends clients that send no request in time or do not read their
    /// answer.
    pub fn expire(&mut self, r: &Registry, now: u64) {
        let late: Vec<(Token, bool)> = self
            .clients
            .iter()
            .filter_map(|(t, c)| match c.answered {
                None if now.saturating_sub(c.since) > REQUEST_TIMEOUT => Some((*t, true)),
                Some(at) if now.saturating_sub(at) > WRITE_TIMEOUT => Some((*t, false)),
                _ => None,
            })
            .collect();
        for (t, answer) in late {
            if answer {
                self.answer(r, t, error_response(408, "Request Timeout"), now);
            } else {
                debug!("metrics client dropped: its answer went unread for 10 s");
                self.drop_client(r, t);
            }
        }
    }
}

/// Binds the listener `[control] metrics` asks for, if any; an error
/// names the file and line.
pub fn bind_configured(cfg: &Config) -> Result<Option<MetricsServer>, String> {
    let Some(addr) = cfg.control.metrics else { return Ok(None) };
    let m = MetricsServer::bind(addr).map_err(|e| {
        cfg.error("control", "metrics", format!("cannot listen on {addr}: {e}")).to_string()
    })?;
    Ok(Some(m))
}

impl Supervisor {
    /// The metrics exposition now (for the listener and `invpnctl
    /// metrics`): the same `status` and `links` the control socket
    /// answers with.
    pub(super) fn metrics_text(&self) -> String {
        let now = super::clock::unix_ms() as f64 / 1000.0;
        metrics::render(&self.status(), &self.link_entries(), now)
    }

    /// Puts a (newly bound) metrics listener in the loop, in place of the
    /// one there was, if any.
    pub fn install_metrics(&mut self, m: Option<MetricsServer>) {
        if let Some(mut old) = self.metrics.take() {
            let reg = self.poll.registry();
            let _ = reg.deregister(&mut old.listener);
            for t in old.clients.keys().copied().collect::<Vec<_>>() {
                old.drop_client(reg, t);
            }
            info!("metrics: no longer listening on {}", old.addr);
        }
        if let Some(mut m) = m {
            match self.poll.registry().register(&mut m.listener, LISTENER, Interest::READABLE) {
                Ok(()) => {
                    info!("metrics: serving http://{}/metrics", m.addr);
                    self.metrics = Some(m);
                }
                Err(e) => warn!("metrics listener {}: {e}", m.addr),
            }
        }
    }

    /// On a reload: the listener the new configuration asks for, bound
    /// before anything is applied (`None`: it stays as it is).
    pub(super) fn reload_metrics(
        &self,
        new: &Config,
    ) -> Result<Option<Option<MetricsServer>>, String> {
        let want = new.control.metrics;
        if want == self.cfg.control.metrics && self.metrics.is_some() == want.is_some() {
            return Ok(None);
        }
        bind_configured(new).map(Some)
    }

    /// Handles readiness on a metrics token.
    pub(super) fn on_metrics(&mut self, t: Token, ev: &mio::event::Event) {
        let now = self.shared.clock.mono();
        let Some(mut m) = self.metrics.take() else { return };
        if t == LISTENER {
            m.accept(self.poll.registry(), now);
        } else {
            if ev.is_readable() {
                if let Some(head) = m.read(self.poll.registry(), t) {
                    let bytes = match head {
                        Head::Metrics { body } => {
                            response(200, "OK", CONTENT_TYPE, &self.metrics_text(), body)
                        }
                        Head::Error(code, reason) => error_response(code, reason),
                        Head::Incomplete => Vec::new(),
                    };
                    m.answer(self.poll.registry(), t, bytes, now);
                }
            }
            if ev.is_writable() {
                m.flush(self.poll.registry(), t);
            }
        }
        m.expire(self.poll.registry(), now);
        self.metrics = Some(m);
    }

    /// Times out slow metrics clients (every loop turn).
    pub(super) fn expire_metrics(&mut self) {
        let now = self.shared.clock.mono();
        if let Some(m) = self.metrics.as_mut() {
            m.expire(self.poll.registry(), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_and_answered() {
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Head::Incomplete);
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Metrics { body: true }
        );
        assert_eq!(parse_head(b"GET /metrics?x=1 HTTP/1.0\n\n"), Head::Metrics { body: true });
        assert_eq!(parse_head(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Head::Metrics { body: false });
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n\r\n"), Head::Error(404, "Not Found"));
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n").clone(),
            Head::Error(405, "Method Not Allowed")
        );
        assert_eq!(
            parse_head(b"GET /metrics HTTP/2.0\r\n\r\n"),
            Head::Error(505, "HTTP Version Not Supported")
        );
        assert_eq!(parse_head(b"GET /metrics\r\n\r\n"), Head::Error(400, "Bad Request"));
        assert_eq!(
            parse_head(b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"),
            Head::Error(400, "Bad Request")
        );
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(parse_head(&big), Head::Error(431, "Request Header Fields Too Large"));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&big), Head::Error(431, "Request Header Fields Too Large"));
    }

    #[test]
    fn responses_say_their_length_and_close() {
        let r = String::from_utf8(response(200, "OK", CONTENT_TYPE, "a 1\n", true)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(r.contains("\r\nContent-Length: 4\r\n") && r.contains("\r\nConnection: close\r\n"));
        assert!(r.ends_with("\r\n\r\na 1\n"));
        let head = String::from_utf8(response(200, "OK", CONTENT_TYPE, "a 1\n", false)).unwrap();
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 4"));
        let e = String::from_utf8(error_response(405, "Method Not Allowed")).unwrap();
        assert!(e.contains("\r\nAllow: GET, HEAD\r\n") && e.ends_with("405 Method Not Allowed\n"));
    }

    #[test]
    fn tokens_stay_in_range_and_skip_those_in_use() {
        let mut m = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(MetricsServer::owns(LISTENER) && !MetricsServer::owns(Token(END)));
        m.next = END - 1;
        assert_eq!(m.token(), Token(END - 1));
        assert_eq!(m.token(), Token(CLIENTS));
        assert!(m.addr().port() > 0);
    }
}
