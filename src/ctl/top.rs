//! `invpnctl top`: the links and their rates, refreshed every second, like
//! `tinc top`. The rates come from two successive `links` answers. On a
//! terminal it draws on the alternate screen (restored on exit, `q` or
//! Ctrl-C); otherwise it prints one frame after another.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::query::{bytes, rtt};
use super::CtlError;
use crate::control::{client, LinkEntry, Request, Status};

/// The time between frames.
const INTERVAL: Duration = Duration::from_secs(1);

/// One link's rates between two snapshots (per second); `None` where the
/// link is new or its counters went back (a new link to the same peer).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Bytes received per second.
    pub bytes_in: Option<f64>,
    /// Bytes sent per second.
    pub bytes_out: Option<f64>,
    /// Messages received per second.
    pub msgs_in: Option<f64>,
    /// Messages sent per second.
    pub msgs_out: Option<f64>,
}

/// A link is the same link in two snapshots if it has the same peer,
/// address and direction.
fn key(l: &LinkEntry) -> (&str, &str, &str) {
    (&l.peer, &l.addr, &l.direction)
}

/// The rates of each link of `now` against `before`, `secs` apart.
pub fn rates(before: &[LinkEntry], now: &[LinkEntry], secs: f64) -> Vec<Rates> {
    let old: HashMap<_, &LinkEntry> = before.iter().map(|l| (key(l), l)).collect();
    now.iter()
        .map(|l| {
            let Some(p) = old.get(&key(l)).filter(|_| secs > 0.0) else {
                return Rates::default();
            };
            let rate = |a: u64, b: u64| a.checked_sub(b).map(|d| d as f64 / secs);
            // the link and its lane together
            Rates {
                bytes_in: rate(l.bytes_in + l.lane_bytes_in, p.bytes_in + p.lane_bytes_in),
                bytes_out: rate(l.bytes_out + l.lane_bytes_out, p.bytes_out + p.lane_bytes_out),
                msgs_in: rate(
                    l.messages_in + l.lane_messages_in,
                    p.messages_in + p.lane_messages_in,
                ),
                msgs_out: rate(
                    l.messages_out + l.lane_messages_out,
                    p.messages_out + p.lane_messages_out,
                ),
            }
        })
        .collect()
}

fn per_sec(v: Option<f64>, unit_bytes: bool) -> String {
    match v {
        None => "-".to_string(),
        Some(r) if unit_bytes => format!("{}/s", bytes(r.round() as u64)),
        Some(r) => format!("{r:.1}"),
    }
}

/// One frame: a header line about the node, then one line per link,
/// busiest first, then the totals.
pub fn frame(s: &Status, links: &[LinkEntry], rates: &[Rates], clock: &str) -> String {
    let mut rows: Vec<(&LinkEntry, &Rates)> = links.iter().zip(rates).collect();
    let busy = |r: &Rates| r.bytes_in.unwrap_or(0.0) + r.bytes_out.unwrap_or(0.0);
    rows.sort_by(|a, b| busy(b.1).total_cmp(&busy(a.1)).then(a.0.peer.cmp(&b.0.peer)));
    let mut t = format!(
        "invpnd {} on {}: {} link(s), {} route(s)   {clock}\n",
        s.mac, s.interface, s.links, s.routes
    );
    t.push_str(&format!(
        "{:<17}  {:>12}  {:>12}  {:>8}  {:>9}  {:>15}  {:>9}  {:>8}\n",
        "PEER", "IN", "OUT", "MSG IN/s", "MSG OUT/s", "RTT", "QUEUED", "DELAY"
    ));
    let mut total = Rates::default();
    let add = |a: &mut Option<f64>, b: Option<f64>| *a = Some(a.unwrap_or(0.0) + b.unwrap_or(0.0));
    for (l, r) in &rows {
        t.push_str(&format!(
            "{:<17}  {:>12}  {:>12}  {:>8}  {:>9}  {:>15}  {:>9}  {:>8}\n",
            l.peer,
            per_sec(r.bytes_in, true),
            per_sec(r.bytes_out, true),
            per_sec(r.msgs_in, false),
            per_sec(r.msgs_out, false),
            rtt(l),
            bytes(l.queued_bytes),
            format!("{:.1} ms", l.queue_delay_us as f64 / 1000.0),
        ));
        add(&mut total.bytes_in, r.bytes_in);
        add(&mut total.bytes_out, r.bytes_out);
        add(&mut total.msgs_in, r.msgs_in);
        add(&mut total.msgs_out, r.msgs_out);
    }
    t.push_str(&format!(
        "{:<17}  {:>12}  {:>12}  {:>8}  {:>9}\n",
        "total",
        per_sec(total.bytes_in.or(Some(0.0)), true),
        per_sec(total.bytes_out.or(Some(0.0)), true),
        per_sec(total.msgs_in.or(Some(0.0)), false),
        per_sec(total.msgs_out.or(Some(0.0)), false),
    ));
    t
}

/// Restores the terminal when dropped (also on an error or a panic).
struct Screen {
    _keys: Option<crate::sys::CbreakTerminal>,
}

impl Screen {
    fn enter(keys: bool) -> Screen {
        // alternate screen, cursor hidden; the first frame comes after a
        // second (rates need two samples)
        // (a reader gone away shows at the first frame)
        let _ = out!("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2Jinvpnctl top: sampling the links...");
        let keys = if keys {
            crate::sys::CbreakTerminal::enter(std::io::stdin().as_raw_fd()).ok()
        } else {
            None
        };
        Screen { _keys: keys }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = out!("\x1b[?25h\x1b[?1049l");
    }
}

/// Waits `d`, or less if `q` is pressed (true) or a signal came.
fn wait(d: Duration, keys: bool, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if keys {
            let mut fds = [libc::pollfd {
                fd: std::io::stdin().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if crate::sys::poll_fds(&mut fds, Some(left)).unwrap_or(0) > 0 {
                let mut b = [0u8; 16];
                match std::io::stdin().read(&mut b) {
                    Ok(n) if b[..n].iter().any(|c| matches!(c, b'q' | b'Q')) => return true,
                    // end of input: no more keys to wait for
                    Ok(0) | Err(_) => return wait(left, false, stop),
                    Ok(_) => {}
                }
            }
        } else {
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
    true
}

fn fetch(sock: &Path, timeout: Duration) -> Result<(Status, Vec<LinkEntry>, Instant), CtlError> {
    let s = serde_json::from_value(client::request(sock, &Request::Status, timeout)?)?;
    let at = Instant::now();
    let l = serde_json::from_value(client::request(sock, &Request::Links, timeout)?)?;
    Ok((s, l, at))
}

/// Runs `top` until `q`, a signal, or `count` frames.
pub fn run(sock: &Path, count: Option<u64>, timeout: Duration) -> Result<(), CtlError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let tty = std::io::stdout().is_terminal();
    let keys = tty && std::io::stdin().is_terminal();
    let (_, mut prev, mut prev_at) = fetch(sock, timeout)?;
    let screen = tty.then(|| Screen::enter(keys));
    let mut shown = 0u64;
    while count.is_none_or(|c| shown < c) {
        if wait(INTERVAL, keys, &stop) {
            break;
        }
        let (status, links, at) = fetch(sock, timeout)?;
        let r = rates(&prev, &links, at.duration_since(prev_at).as_secs_f64());
        let clock = crate::tls::cert_info::unix_to_text(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        let f = frame(&status, &links, &r, &clock);
        if screen.is_some() {
            // home, clear, the frame, and what keys do
            let hint = if keys { "q: quit" } else { "Ctrl-C: quit" };
            out!("\x1b[H\x1b[2J{f}\n{hint}")?;
        } else {
            out!("{}{f}", if shown > 0 { "\n" } else { "" })?;
        }
        shown += 1;
        (prev, prev_at) = (links, at);
    }
    drop(screen);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(peer: &str, bytes_in: u64, messages_out: u64) -> LinkEntry {
        serde_json::from_value(serde_json::json!({
            "peer": peer, "addr": "198.18.1.2:41744", "direction": "out",
            "protocol": "invpnd", "uptime_secs": 10, "bytes_in": bytes_in, "bytes_out": 0,
            "messages_in": 0, "queued_bytes": 0, "queue_delay_us": 0, "dropped": 0,
            "codel_drops": 0, "ecn_marks": 0, "malformed": 0, "messages_out": messages_out,
            "rtt_us": 1500, "rttvar_us": 250
        }))
        .unwrap()
    }

    #[test]
    fn rates_come_from_the_same_link_in_two_snapshots() {
        let before = [link("02:00:00:00:00:01", 1000, 10), link("02:00:00:00:00:02", 5000, 0)];
        let now = [
            link("02:00:00:00:00:01", 3048, 14),
            link("02:00:00:00:00:02", 10, 0), // went back: a new link
            link("02:00:00:00:00:03", 10, 0), // new
        ];
        let r = rates(&before, &now, 2.0);
        assert_eq!(r[0].bytes_in, Some(1024.0));
        assert_eq!(r[0].msgs_out, Some(2.0));
        assert_eq!(r[1].bytes_in, None);
        assert_eq!(r[2], Rates::default());
        let s: Status = serde_json::from_value(serde_json::json!({
            "version": "0.1.0", "mac": "02:50:56:00:00:01", "interface": "invpn0",
            "ifindex": 3, "mtu": 1500, "listen": null, "uptime_secs": 5, "links": 3,
            "routes": 3, "cached_nodes": 0, "workers": 2, "counters": {}, "drops": {}
        }))
        .unwrap();
        let f = frame(&s, &now, &r, "2026-01-01 00:00:00 UTC");
        let lines: Vec<&str> = f.lines().collect();
        assert!(lines[0].starts_with("invpnd 02:50:56:00:00:01 on invpn0: 3 link(s)"), "{f}");
        assert!(lines[1].starts_with("PEER"), "{f}");
        // the busiest first; unknown rates as "-"
        assert!(lines[2].starts_with("02:00:00:00:00:01") && lines[2].contains("1.0 KiB/s"), "{f}");
        assert!(lines[2].contains("1.5±0.2 ms"), "{f}");
        assert!(lines[3].contains(" - "), "{f}");
        assert!(lines[5].starts_with("total") && lines[5].contains("1.0 KiB/s"), "{f}");
        assert_eq!(lines.len(), 6);
    }
}
