//! `invpnctl`: certificates for a network, and questions to a running
//! invpnd over its control socket.

/// `print!` for invpnctl's output (see [`print`]).
macro_rules! out {
    ($($arg:tt)*) => { $crate::ctl::print(format_args!($($arg)*)) };
}

/// `println!` for invpnctl's output (see [`print`]).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::ctl::print(format_args!("{}\n", format_args!($($arg)*))) };
}

pub mod certs;
pub mod commands;
pub mod completion;
pub mod inspect;
pub mod manage;
pub mod query;
pub mod revoke;
pub mod top;
pub mod verify;

use std::path::PathBuf;

/// What went wrong, for one line on standard error; exit status 1 (2 for
/// `cert verify`, whose 1 means an invalid certificate).
#[derive(Debug)]
pub enum CtlError {
    /// The command line: an unknown command, a bad option value, a missing
    /// or extra argument.
    Usage(String),
    /// A file that could not be read, written or understood; the message
    /// names it.
    File(String),
    /// The daemon: its control socket could not be reached, it broke off,
    /// or it refused what was asked.
    Daemon(String),
    /// Standard output could not be written (`closed`: its reader went
    /// away, see [`CtlError::is_closed_output`]).
    Output {
        /// Whether the reader closed it.
        closed: bool,
        /// What the write reported.
        detail: String,
    },
    /// What a library reported (certificates, keys, JSON), as it said it.
    Failed(String),
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CtlError::Usage(m) | CtlError::File(m) | CtlError::Daemon(m) | CtlError::Failed(m) => {
                f.write_str(m)
            }
            CtlError::Output { closed: true, .. } => {
                f.write_str("standard output: closed by its reader")
            }
            CtlError::Output { closed: false, detail } => write!(f, "standard output: {detail}"),
        }
    }
}

impl CtlError {
    /// A failed write to standard output. A reader that went away
    /// (`invpnctl routes | head -2`) is no failure: it had all it wanted,
    /// and [`is_closed_output`](Self::is_closed_output) tells invpnctl to end
    /// quietly with status 0, as ripgrep does.
    pub fn output(e: std::io::Error) -> CtlError {
        CtlError::Output {
            closed: e.kind() == std::io::ErrorKind::BrokenPipe,
            detail: e.to_string(),
        }
    }

    /// Whether this is only the reader of standard output having gone away.
    pub fn is_closed_output(&self) -> bool {
        matches!(self, CtlError::Output { closed: true, .. })
    }
}

/// Writes to standard output, flushed, with errors as
/// [`CtlError::output`] (never a panic, unlike `print!`).
pub fn print(args: std::fmt::Arguments<'_>) -> Result<(), CtlError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.flush()).map_err(CtlError::output)
}

impl<E: std::error::Error> From<E> for CtlError {
    fn from(e: E) -> CtlError {
        CtlError::Failed(e.to_string())
    }
}

/// Where the control socket is: `--socket`, else `[control] socket` of
/// `-c CONF`, else the default.
pub fn socket_path(socket: Option<String>, conf: Option<String>) -> Result<PathBuf, CtlError> {
    if let Some(s) = socket {
        return Ok(PathBuf::from(s));
    }
    if let Some(c) = conf {
        let cfg = crate::config::load(std::path::Path::new(&c))
            .map_err(|e| CtlError::File(e.to_string()))?;
        return Ok(cfg.control.socket);
    }
    Ok(PathBuf::from(crate::config::DEFAULT_SOCKET))
}

/// The CA certificate named by `[ssl] ca` of an invpnd configuration.
pub fn ca_of_config(conf: &str) -> Result<PathBuf, CtlError> {
    let cfg = crate::config::load(std::path::Path::new(conf))
        .map_err(|e| CtlError::File(e.to_string()))?;
    Ok(cfg.ssl.ca)
}
