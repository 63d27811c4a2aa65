//! Whom the daemon runs as once it is set up (`[daemon] user` and
//! `group`; invpnd(8), PRIVILEGES).
//!
//! invpnd starts as root: it creates the TAP interface, binds its sockets,
//! reads its key and runs the `up` program. Then it becomes the configured
//! user (by default `invpn`, if the system has that account), keeping one
//! capability, CAP_NET_ADMIN, which the interface's MTU on a restart in
//! place, socket buffers past the sysctl limits and congestion controls
//! outside the allowed list need (and CAP_NET_BIND_SERVICE when it listens
//! on a port below 1024, for the restart's new listener). The capabilities
//! are ambient, so that a restart in place (re-executing invpnd) and the
//! `down` program keep them; nothing can regain root.

use std::path::Path;

use crate::config::Config;
use crate::sys::{self, CAP_NET_ADMIN, CAP_NET_BIND_SERVICE};

/// The user `[daemon] user` means when it is not set, if the system has it.
pub const DEFAULT_USER: &str = "invpn";

/// The account to run as, and the capabilities kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    /// The user's name as configured (or [`DEFAULT_USER`]).
    pub user: String,
    /// The group's name, or the user's primary group as a number.
    pub group: String,
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
    /// The capabilities kept (`sys::CAP_*`).
    pub keep: Vec<u32>,
    /// Whether `[daemon] user` names it (else it is the default, which a
    /// node whose files the user cannot read falls back from to root).
    pub configured: bool,
}

impl Privileges {
    /// `CAP_NET_ADMIN` (and `CAP_NET_BIND_SERVICE`), for logs.
    pub fn keep_text(&self) -> String {
        let names: Vec<&str> = self
            .keep
            .iter()
            .map(|c| if *c == CAP_NET_ADMIN { "CAP_NET_ADMIN" } else { "CAP_NET_BIND_SERVICE" })
            .collect();
        names.join(" and ")
    }
}

/// What `[daemon]` asks for: `Ok(None)` to stay root (`user = root`, or
/// no user set and no [`DEFAULT_USER`] on the system). Errors name the
/// setting's file and line.
pub fn resolve(cfg: &Config) -> Result<Option<Privileges>, String> {
    let configured = cfg.daemon.user.as_deref();
    let user = match configured {
        Some("root") | Some("0") => return Ok(None),
        Some(u) => u,
        None => DEFAULT_USER,
    };
    let account = sys::user_by_name(user).map_err(|e| {
        cfg.error("daemon", "user", format!("{user:?}: cannot look it up: {e}")).to_string()
    })?;
    let Some(account) = account else {
        return match configured {
            Some(_) => {
                Err(cfg.error("daemon", "user", format!("{user:?}: no such user")).to_string())
            }
            None => Ok(None),
        };
    };
    if account.uid == 0 {
        return Ok(None);
    }
    let (group, gid) = match cfg.daemon.group.as_deref() {
        Some(g) => match sys::group_by_name(g) {
            Ok(Some(gid)) => (g.to_string(), gid),
            Ok(None) => {
                return Err(cfg
                    .error("daemon", "group", format!("{g:?}: no such group"))
                    .to_string())
            }
            Err(e) => {
                return Err(cfg
                    .error("daemon", "group", format!("{g:?}: cannot look it up: {e}"))
                    .to_string())
            }
        },
        None => (account.gid.to_string(), account.gid),
    };
    let mut keep = vec![CAP_NET_ADMIN];
    let low = |p: u16| p > 0 && p < 1024;
    let metrics_low = cfg.control.metrics.is_some_and(|a| low(a.port()));
    if (cfg.network.listening() && low(cfg.network.port)) || metrics_low {
        keep.push(CAP_NET_BIND_SERVICE);
    }
    Ok(Some(Privileges {
        user: user.to_string(),
        group,
        uid: account.uid,
        gid,
        keep,
        configured: configured.is_some(),
    }))
}

/// What the daemon must still be able to do as `p`: read its key,
/// certificates, CRL and configuration again (reload, restart in place)
/// and write its node cache. One message per problem, naming the file and
/// the setting's file:line.
pub fn check_access(cfg: &Config, p: &Privileges) -> Vec<String> {
    let mut problems = Vec::new();
    let who = format!("user {} (uid {}, gid {})", p.user, p.uid, p.gid);
    let mut readable = |section: &str, key: &str, path: &Path| {
        let ok = readable_by(path, p);
        if !ok {
            problems.push(
                cfg.error(
                    section,
                    key,
                    format!(
                        "{}: not readable by {who}, whom the daemon runs as after setup \
                         (reloads and restarts read it again; see [daemon] user)",
                        path.display()
                    ),
                )
                .to_string(),
            );
        }
    };
    readable("ssl", "key", &cfg.ssl.key);
    readable("ssl", "cert", &cfg.ssl.cert);
    readable("ssl", "ca", &cfg.ssl.ca);
    if let Some(crl) = &cfg.ssl.crl {
        readable("ssl", "crl", crl);
    }
    let conf_ok = readable_by(&cfg.path, p);
    if !conf_ok {
        problems.push(format!(
            "{}: not readable by {who}, whom the daemon runs as after setup (reloads and \
             restarts read it again; see [daemon] user)",
            cfg.path.display()
        ));
    }
    if let Some(dir) = cfg.network.cache.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let ok = std::fs::metadata(dir).is_ok_and(|m| writable_by(&m, p.uid, p.gid))
            && searchable_up_to(dir, p);
        if !ok {
            problems.push(
                cfg.error(
                    "network",
                    "cache",
                    format!(
                        "{}: the directory is not writable by {who}, who writes the node \
                         cache (chown it, or set cache elsewhere)",
                        dir.display()
                    ),
                )
                .to_string(),
            );
        }
    }
    problems
}

/// Whether `p` may read `path`: the file's mode bits and owner, and every
/// directory above it searchable (ACLs are not consulted).
fn readable_by(path: &Path, p: &Privileges) -> bool {
    let Ok(abs) = std::path::absolute(path) else { return false };
    std::fs::metadata(&abs).is_ok_and(|m| sys::readable_by(&m, p.uid, &[p.gid]))
        && abs.parent().is_none_or(|d| searchable_up_to(d, p))
}

/// Whether `p` may search `dir` and every directory above it.
fn searchable_up_to(dir: &Path, p: &Privileges) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(abs) = std::path::absolute(dir) else { return false };
    abs.ancestors().all(|d| {
        std::fs::metadata(d).is_ok_and(|m| {
            let mode = m.mode();
            (m.uid() == p.uid && mode & 0o100 != 0)
                || (m.gid() == p.gid && mode & 0o010 != 0)
                || mode & 0o001 != 0
        })
    })
}

/// Whether `uid`/`gid` may create files in a directory, by its mode bits.
fn writable_by(m: &std::fs::Metadata, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = m.mode();
    (m.uid() == uid && mode & 0o300 == 0o300)
        || (m.gid() == gid && mode & 0o030 == 0o030)
        || mode & 0o003 == 0o003
}

/// Becomes `p` for good. The control socket (at `socket`) is given to the
/// user first, so that the user's own `invpnctl` may use it.
pub fn drop_to(p: &Privileges, socket: &Path) -> Result<(), String> {
    chown(socket, p.uid, p.gid)
        .map_err(|e| format!("{}: cannot give it to user {}: {e}", socket.display(), p.user))?;
    sys::drop_privileges(p.uid, p.gid, &p.keep)
        .map_err(|e| format!("cannot become user {} (uid {}): {e}", p.user, p.uid))
}

fn chown(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("invpn.conf");
        std::fs::write(&p, format!("[ssl]\nkey = k\ncert = c\nca = a\n{extra}")).unwrap();
        crate::config::load(&p).unwrap()
    }

    #[test]
    fn root_by_choice_and_unknown_users() {
        assert_eq!(resolve(&cfg("[daemon]\nuser = root\n")), Ok(None));
        let e = resolve(&cfg("[daemon]\nuser = no-such-user-here\n")).unwrap_err();
        assert!(
            e.contains("invpn.conf:6: [daemon] user: \"no-such-user-here\": no such user"),
            "{e}"
        );
        let e = resolve(&cfg("[daemon]\nuser = nobody\ngroup = no-such-group\n")).unwrap_err();
        assert!(e.contains("[daemon] group: \"no-such-group\": no such group"), "{e}");
    }

    #[test]
    fn nobody_keeps_net_admin_and_low_ports_keep_bind_service() {
        let p = resolve(&cfg("[daemon]\nuser = nobody\n")).unwrap().unwrap();
        assert_eq!((p.uid, p.keep.clone()), (65534, vec![CAP_NET_ADMIN]));
        assert_eq!(p.keep_text(), "CAP_NET_ADMIN");
        let p = resolve(&cfg("[network]\nport = 655\n[daemon]\nuser = nobody\n")).unwrap().unwrap();
        assert_eq!(p.keep, vec![CAP_NET_ADMIN, CAP_NET_BIND_SERVICE]);
        // files nobody cannot read are named, with their settings
        let problems = check_access(&cfg("[daemon]\nuser = nobody\n"), &p);
        assert!(problems.iter().any(|m| m.contains("[ssl] key: ") && m.contains("not readable")));
    }
}
