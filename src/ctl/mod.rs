//! `invpnctl`: certificates for a network, and questions to a running
//! invpnd over its control socket.

pub mod certs;
pub mod query;

use std::path::PathBuf;

/// What went wrong, for one line on standard error; exit status 1.
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

/// The usage text.
pub const USAGE: &str = "\
Usage: invpnctl [--socket PATH | -c CONF] [--json] COMMAND [ARGS]

Questions to a running invpnd (over its control socket):
  status                 the node: MAC, interface, uptime, links, routes, counters
  links                  each link: peer, address, direction, uptime, bytes, queue, protocol
  routes                 each route: target, next hop, second path, age
  trace [--wait S]       flood a health request, show every node that answers
                         with its links and routes and the paths taken (default 2 s)
  graph [--wait S]       the whole mesh as a Graphviz graph (dot -Tsvg renders it)

Certificates (no openssl needed; X.509 v3, CN = the node's MAC):
  ca new --dir DIR [--name NAME] [--days N] [--key-type T]
  cert new --ca-dir DIR --mac MAC|random --out PREFIX [--days N] [--key-type T]
  cert request --mac MAC|random --out PREFIX [--key-type T]
  cert sign --ca-dir DIR --csr FILE --out FILE [--days N]
  cert show FILE

Options:
  --socket PATH   the control socket (default: from -c, else /run/invpnd.sock)
  -c, --config CONF  read the control socket's path from this invpnd configuration
  --json          print the daemon's answer as JSON
  --timeout S     how long to wait for the daemon's answer (default 5; a trace
                  waits this long after its --wait)
  -h, --help      this text;  -V, --version: the version
Key types T: p256 (default), p384, ed25519.";

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
    Ok(PathBuf::from("/run/invpnd.sock"))
}
