//! `invpnctl`: certificates for a network, and questions to a running
//! invpnd over its control socket.

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
pub struct CtlError(pub String);

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for CtlError {
    fn from(e: E) -> CtlError {
        CtlError(e.to_string())
    }
}

/// Where the control socket is: `--socket`, else `[control] socket` of
/// `-c CONF`, else the default.
pub fn socket_path(socket: Option<String>, conf: Option<String>) -> Result<PathBuf, CtlError> {
    if let Some(s) = socket {
        return Ok(PathBuf::from(s));
    }
    if let Some(c) = conf {
        let cfg =
            crate::config::load(std::path::Path::new(&c)).map_err(|e| CtlError(e.to_string()))?;
        return Ok(cfg.control.socket);
    }
    Ok(PathBuf::from(crate::config::DEFAULT_SOCKET))
}

/// The CA certificate named by `[ssl] ca` of an invpnd configuration.
pub fn ca_of_config(conf: &str) -> Result<PathBuf, CtlError> {
    let cfg =
        crate::config::load(std::path::Path::new(conf)).map_err(|e| CtlError(e.to_string()))?;
    Ok(cfg.ssl.ca)
}
