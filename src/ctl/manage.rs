//! `invpnctl reload | restart | log`: acting on a running daemon over its
//! control socket (reload and restart as SIGHUP and SIGUSR2 do, with their
//! outcome), its log level and its log lines.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::CtlError;
use crate::control::{client, FollowLine, LogLevel, ReloadReport, Request, RestartReport, Status};

/// Runs `reload`, `restart` or `log`; returns the exit status (1 when the
/// daemon refused a reload or a restart).
pub fn run(
    cmd: &str,
    m: &getopts::Matches,
    sock: &Path,
    json: bool,
    timeout: Duration,
) -> Result<u8, CtlError> {
    match cmd {
        "reload" => reload(sock, json, timeout),
        "restart" => restart(sock, json, timeout),
        _ => log(m, sock, json, timeout).map(|()| 0),
    }
}

fn print_json(v: &serde_json::Value) -> Result<(), CtlError> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

fn reload(sock: &Path, json: bool, timeout: Duration) -> Result<u8, CtlError> {
    let v = client::request(sock, &Request::Reload, timeout)?;
    let r: ReloadReport = serde_json::from_value(v.clone())?;
    if json {
        print_json(&v)?;
    } else {
        out!("{}", reload_text(&r))?;
    }
    Ok(if r.applied { 0 } else { 1 })
}

/// The `reload` text.
pub fn reload_text(r: &ReloadReport) -> String {
    let mut t = String::new();
    if !r.applied {
        t.push_str("reload refused; the daemon keeps its running configuration:\n");
        for e in &r.errors {
            t.push_str(&format!("  {e}\n"));
        }
        return t;
    }
    t.push_str("reload applied:\n");
    for c in &r.changed {
        t.push_str(&format!("  {c}\n"));
    }
    for c in &r.closed {
        t.push_str(&format!("link closed: {c}\n"));
    }
    for w in &r.warnings {
        t.push_str(&format!("warning: {w}\n"));
    }
    if !r.restart_needed.is_empty() {
        t.push_str(&format!(
            "changed, applied by a restart in place (invpnctl restart): {}\n",
            r.restart_needed.join(", ")
        ));
    }
    if !r.full_restart_needed.is_empty() {
        t.push_str(&format!(
            "changed, applied only by a full stop and start: {}\n",
            r.full_restart_needed.join(", ")
        ));
    }
    t
}

fn restart(sock: &Path, json: bool, timeout: Duration) -> Result<u8, CtlError> {
    let v = client::request(sock, &Request::Restart, timeout)?;
    let r: RestartReport = serde_json::from_value(v.clone())?;
    if !r.restarting {
        if json {
            print_json(&v)?;
        } else {
            outln!("restart refused; the daemon keeps running as it was:")?;
            for e in &r.errors {
                outln!("  {e}")?;
            }
        }
        return Ok(1);
    }
    if !json {
        outln!("restarting in place (the interface and its addresses are kept)")?;
        for w in &r.warnings {
            outln!("warning: {w}")?;
        }
        if !r.applied_by_restart.is_empty() {
            outln!("  applying: {}", r.applied_by_restart.join(", "))?;
        }
        if !r.full_restart_needed.is_empty() {
            outln!("  still needing a full stop and start: {}", r.full_restart_needed.join(", "))?;
        }
    }
    // the old process answered, then re-executes: wait for the new one
    let end = Instant::now() + timeout + Duration::from_secs(10);
    let status = loop {
        std::thread::sleep(Duration::from_millis(100));
        match client::request(sock, &Request::Status, Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= end => {
                return Err(CtlError::Daemon(format!(
                    "the daemon did not come back after its restart ({e}); see its log"
                )))
            }
            Err(_) => {}
        }
    };
    if json {
        print_json(&serde_json::json!({ "restart": v, "status": status }))?;
    } else {
        let s: Status = serde_json::from_value(status)?;
        outln!(
            "restarted: invpnd {} on {} ({}), {} link(s) so far",
            s.version,
            s.interface,
            s.mac,
            s.links
        )?;
    }
    Ok(0)
}

fn log(m: &getopts::Matches, sock: &Path, json: bool, timeout: Duration) -> Result<(), CtlError> {
    let level = m.opt_str("level");
    let follow = m.opt_present("follow");
    if level.is_some() || !follow {
        let v = client::request(sock, &Request::Log { level }, timeout)?;
        if json && !follow {
            return print_json(&v);
        }
        let l: LogLevel = serde_json::from_value(v)?;
        if !json {
            match &l.previous {
                Some(p) => outln!("log level: {} (was {p})", l.level)?,
                None if !follow => outln!("log level: {}", l.level)?,
                None => {}
            }
        }
    }
    if !follow {
        return Ok(());
    }
    let mut out = std::io::stdout();
    let r = client::follow(
        sock,
        timeout,
        |v| {
            if !json {
                let level = v["level"].as_str().unwrap_or("?").to_string();
                eprintln!("following the daemon's log (level {level}); interrupt to stop");
            }
        },
        |l| {
            let text =
                if json { serde_json::to_string(&l).unwrap_or_default() } else { follow_text(&l) };
            writeln!(out, "{text}")?;
            out.flush()
        },
    );
    match r {
        Ok(()) => {
            Err(CtlError::Daemon("the daemon closed the connection (stopped or restarted)".into()))
        }
        Err(client::ClientError::Io { err, .. })
            if err.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// One followed line as `invpnctl log -f` prints it.
pub fn follow_text(l: &FollowLine) -> String {
    match l {
        FollowLine::Line { time_ms, level, msg } => {
            let t =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*time_ms) * 1_000_000)
                    .map(|d| {
                        format!(
                            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                            d.year(),
                            u8::from(d.month()),
                            d.day(),
                            d.hour(),
                            d.minute(),
                            d.second(),
                            d.millisecond()
                        )
                    })
                    .unwrap_or_default();
            format!("{t} {level:<5} {msg}")
        }
        FollowLine::Dropped(n) => {
            format!("-- {n} line(s) dropped: this reader was too slow for the daemon --")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_for_people() {
        let r = ReloadReport {
            applied: false,
            errors: vec!["/etc/invpn/invpn.conf:3: [network] port: \"x\" is not a TCP port".into()],
            ..ReloadReport::default()
        };
        let t = reload_text(&r);
        assert!(t.starts_with("reload refused") && t.contains("\n  /etc/invpn/invpn.conf:3: "));
        let r = ReloadReport {
            applied: true,
            changed: vec!["[network] max_links: 3".into()],
            closed: vec!["02:50:56:00:00:03: revoked".into()],
            restart_needed: vec!["[network] port".into()],
            ..ReloadReport::default()
        };
        let t = reload_text(&r);
        assert!(t.contains("reload applied:\n  [network] max_links: 3\n"), "{t}");
        assert!(t.contains("link closed: 02:50:56:00:00:03: revoked\n"), "{t}");
        assert!(t.contains("restart in place (invpnctl restart): [network] port\n"), "{t}");
        let l = FollowLine::Line { time_ms: 1_000_123, level: "INFO".into(), msg: "hi".into() };
        assert_eq!(follow_text(&l), "1970-01-01T00:16:40.123Z INFO  hi");
        assert!(follow_text(&FollowLine::Dropped(4)).starts_with("-- 4 line(s) dropped"));
    }
}
