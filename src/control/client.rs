//! The client side of the control socket, used by `invpnctl`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{FollowLine, Request, Response};

/// Why a request failed.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon at the socket.
    Connect {
        /// The control socket's path.
        path: String,
        /// Why connecting failed.
        err: std::io::Error,
    },
    /// The daemon did not answer in time, or the connection broke.
    Io {
        /// The control socket's path.
        path: String,
        /// The error, a timeout included.
        err: std::io::Error,
    },
    /// The answer was not a response.
    Garbled(String),
    /// The daemon refused the request.
    Refused(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect { path, err } => {
                write!(f, "cannot connect to {path}: {err} (is invpnd running? is this its [control] socket?)")
            }
            ClientError::Io { path, err }
                if err.kind() == std::io::ErrorKind::WouldBlock
                    || err.kind() == std::io::ErrorKind::TimedOut =>
            {
                write!(f, "{path}: the daemon did not answer in time")
            }
            ClientError::Io { path, err } => write!(f, "{path}: {err}"),
            ClientError::Garbled(e) => write!(f, "unreadable answer from the daemon: {e}"),
            ClientError::Refused(e) => write!(f, "the daemon refused the request: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Sends `req` and returns the result, waiting at most `timeout` for it.
pub fn request(
    path: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<serde_json::Value, ClientError> {
    send(path, req, timeout).map(|(v, _)| v)
}

/// Sends `req`; returns the result and the connection (read from after
/// the answer by [`follow`]).
fn send(
    path: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<(serde_json::Value, BufReader<UnixStream>), ClientError> {
    let p = path.display().to_string();
    let io = |err| ClientError::Io { path: p.clone(), err };
    let mut s =
        UnixStream::connect(path).map_err(|err| ClientError::Connect { path: p.clone(), err })?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::Garbled(e.to_string()))?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(s);
    let mut answer = String::new();
    reader.read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ClientError::Garbled(
            "the daemon closed the connection without answering".into(),
        ));
    }
    let r: Response =
        serde_json::from_str(&answer).map_err(|e| ClientError::Garbled(e.to_string()))?;
    match (r.ok, r.result, r.error) {
        (true, Some(v), _) => Ok((v, reader)),
        (_, _, Some(e)) => Err(ClientError::Refused(e)),
        _ => Err(ClientError::Garbled("neither a result nor an error".into())),
    }
}

/// Follows the daemon's log: `first` gets the answer (the level), then
/// `each` every line, until the daemon goes away (`Ok`) or `each` fails.
pub fn follow(
    path: &Path,
    timeout: Duration,
    first: impl FnOnce(serde_json::Value),
    mut each: impl FnMut(FollowLine) -> std::io::Result<()>,
) -> Result<(), ClientError> {
    let p = path.display().to_string();
    let (v, mut reader) = send(path, &Request::Follow, timeout)?;
    first(v);
    reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(|err| ClientError::Io { path: p.clone(), err })?;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                let l: FollowLine =
                    serde_json::from_str(&line).map_err(|e| ClientError::Garbled(e.to_string()))?;
                each(l).map_err(|err| ClientError::Io { path: "standard output".into(), err })?;
            }
            Err(err) => return Err(ClientError::Io { path: p, err }),
        }
    }
}
