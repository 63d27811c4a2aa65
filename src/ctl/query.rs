//! `invpnctl status | links | routes | metrics | trace | graph`: questions to the
//! daemon over its control socket, printed for people (or as JSON).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::CtlError;
use crate::control::{client, dot, LinkEntry, Request, RouteEntry, Status, Trace};

/// Runs one query command; `wait` is the `--wait` of trace and graph.
pub fn run(
    cmd: &str,
    wait: Option<&str>,
    sock: &Path,
    json: bool,
    timeout: Duration,
) -> Result<(), CtlError> {
    let wait = wait_secs(wait)?;
    let req = match cmd {
        "status" => Request::Status,
        "links" => Request::Links,
        "routes" => Request::Routes,
        _ => Request::Trace { wait_ms: wait.as_millis() as u64 },
    };
    let patience = if matches!(req, Request::Trace { .. }) { wait + timeout } else { timeout };
    let value = client::request(sock, &req, patience)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let text = match cmd {
        "status" => format_status(&serde_json::from_value(value)?),
        "links" => format_links(&serde_json::from_value::<Vec<LinkEntry>>(value)?),
        "routes" => format_routes(&serde_json::from_value::<Vec<RouteEntry>>(value)?),
        "trace" => format_trace(&serde_json::from_value(value)?),
        _ => dot::render(&serde_json::from_value(value)?),
    };
    out!("{text}")?;
    Ok(())
}

/// `metrics`: the exposition printed, or written to `out` the way
/// node_exporter's textfile collector wants it: whole or not at all (a
/// temporary file beside it, renamed over it).
pub fn metrics(
    sock: &Path,
    out: Option<&Path>,
    json: bool,
    timeout: Duration,
) -> Result<(), CtlError> {
    let value = client::request(sock, &Request::Metrics, timeout)?;
    let text: String = serde_json::from_value(value)?;
    match out {
        None if json => outln!("{}", serde_json::to_string(&text)?)?,
        None => out!("{text}")?,
        Some(path) => write_whole(path, text.as_bytes())
            .map_err(|e| CtlError::File(format!("{}: {e}", path.display())))?,
    }
    Ok(())
}

/// Writes `path` through a temporary file in the same directory, so that
/// a reader sees the old file or the new one, never a part.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().ok_or(std::io::ErrorKind::InvalidInput)?.to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn wait_secs(wait: Option<&str>) -> Result<Duration, CtlError> {
    match wait {
        None => Ok(Duration::from_secs(2)),
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 60.0 => Ok(Duration::from_secs_f64(v)),
            _ => Err(CtlError::Usage(format!(
                "--wait {s:?}: expected seconds, more than 0 and at most 60"
            ))),
        },
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, ...
pub fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// The `status` text.
pub fn format_status(s: &Status) -> String {
    let c = |k: &str| s.counters.get(k).copied().unwrap_or(0);
    let drops: Vec<String> =
        s.drops.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k}={v}")).collect();
    let mut t = String::new();
    t.push_str(&format!(
        "node:         {} (invpnd {}, up {})\n",
        s.mac,
        s.version,
        duration(s.uptime_secs)
    ));
    t.push_str(&format!("interface:    {} (ifindex {}, MTU {})\n", s.interface, s.ifindex, s.mtu));
    t.push_str(&format!("listening:    {}\n", s.listen.as_deref().unwrap_or("no (no_incoming)")));
    t.push_str(&format!(
        "links:        {}{}   routes: {}   cached nodes: {}   workers: {}\n",
        s.links,
        if s.direct_links > 0 { format!(" ({} direct)", s.direct_links) } else { String::new() },
        s.routes,
        s.cached_nodes,
        s.workers
    ));
    if !s.congestion.is_empty() {
        t.push_str(&format!("congestion:   {} ({})\n", s.congestion, s.congestion_source));
    }
    t.push_str(&format!(
        "from TAP:     {} frames, {}\nto TAP:       {} frames, {}\n",
        c("tap_frames_in"),
        bytes(c("tap_bytes_in")),
        c("tap_frames_out"),
        bytes(c("tap_bytes_out"))
    ));
    t.push_str(&format!(
        "forwarded:    {} frames   messages in: {} ({} control)   announcements accepted: {}   \
         unknown types: {}\n",
        c("frames_forwarded"),
        c("messages_in"),
        c("control_messages_in"),
        c("announcements_accepted"),
        c("unknown_types")
    ));
    t.push_str(&format!(
        "drops:        {}\n",
        if drops.is_empty() { "none".to_string() } else { drops.join(" ") }
    ));
    let bad: Vec<String> =
        s.malformed.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k}={v}")).collect();
    if !bad.is_empty() {
        t.push_str(&format!("malformed:    {}\n", bad.join(" ")));
    }
    let closes: Vec<String> =
        s.closes.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k}={v}")).collect();
    if !closes.is_empty() {
        t.push_str(&format!("closes:       {}\n", closes.join(" ")));
    }
    t.push_str(&format!(
        "handshakes:   {} pending, {} connections refused\n",
        s.pending_handshakes,
        c("connections_refused")
    ));
    let d = &s.dialer;
    t.push_str(&format!(
        "dial targets: {} seeds, {} confirmed, {} hearsay (largest share {} of {}); \
         {} refused, {} evicted, {} given up\n",
        d.seeds,
        d.confirmed,
        d.hearsay,
        d.hearsay_largest_share,
        d.hearsay_per_link_limit,
        d.refused,
        d.evicted,
        d.expired
    ));
    t
}

/// A link's round-trip time and its variation, `1.2±0.3 ms` (`-` before
/// the first sample).
pub fn rtt(l: &LinkEntry) -> String {
    if l.rtt_us == 0 {
        return "-".to_string();
    }
    format!("{:.1}±{:.1} ms", l.rtt_us as f64 / 1000.0, l.rttvar_us as f64 / 1000.0)
}

/// The `links` text.
pub fn format_links(links: &[LinkEntry]) -> String {
    let row = |c: [&str; 15]| {
        format!(
            "{:<17}  {:<26}  {:<3}  {:<11}  {:>7}  {:>10}  {:>10}  {:>9}  {:>8}  {:>7}  {:>7}  {:>15}  {:>6}  {:>9}  {}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], c[13], c[14]
        )
    };
    let mut t = row([
        "PEER",
        "ADDRESS",
        "DIR",
        "PROTOCOL",
        "UPTIME",
        "IN",
        "OUT",
        "QUEUED",
        "DELAY",
        "DROPPED",
        "MARKED",
        "RTT",
        "HEARD",
        "INFLIGHT",
        "CERT EXPIRES",
    ]);
    for l in links {
        let expires = match l.peer_cert_not_after {
            0 => "-".to_string(),
            t => crate::tls::cert_info::unix_to_text(t).chars().take(10).collect(),
        };
        t.push_str(&row([
            &l.peer,
            &l.addr,
            &if l.direct { format!("{} direct", l.direction) } else { l.direction.clone() },
            // a link with lanes: "invpnd+lane", "invpnd+5lanes"
            &match l.lanes.max(u64::from(l.lane)) {
                0 => l.protocol.clone(),
                1 => format!("{}+lane", l.protocol),
                n => format!("{}+{n}lanes", l.protocol),
            },
            &duration(l.uptime_secs),
            &bytes(l.bytes_in),
            &bytes(l.bytes_out),
            &bytes(l.queued_bytes),
            &format!("{:.1} ms", l.queue_delay_us as f64 / 1000.0),
            &l.dropped.to_string(),
            &l.ecn_marks.to_string(),
            &rtt(l),
            &format!("{:.1}s", l.last_rx_ms as f64 / 1000.0),
            &bytes(l.inflight_bytes),
            &expires,
        ]));
    }
    t.push_str(&format!("{} link(s)\n", links.len()));
    t
}

/// The `routes` text.
pub fn format_routes(routes: &[RouteEntry]) -> String {
    let mut t = format!(
        "{:<17}  {:<17}  {:<17}  {:>5}  {}\n",
        "TARGET", "NEXT HOP", "SECOND PATH", "AGE", "ADDRESS"
    );
    for r in routes {
        t.push_str(&format!(
            "{:<17}  {:<17}  {:<17}  {:>5}  {}\n",
            r.target,
            r.next_hop,
            r.alternative.as_deref().unwrap_or("-"),
            duration(r.age_secs),
            r.addr.as_deref().unwrap_or("-")
        ));
    }
    t.push_str(&format!("{} route(s)\n", routes.len()));
    t
}

/// The `trace` text: every node that answered, its links and routes, the
/// path the request took to it and the path its answer took back.
pub fn format_trace(tr: &Trace) -> String {
    let origin = tr.nodes.iter().find(|n| n.origin).map(|n| n.mac.clone()).unwrap_or_default();
    let mut t = String::new();
    let answered: BTreeSet<&str> = tr.nodes.iter().map(|n| n.mac.as_str()).collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut links: BTreeSet<(String, String)> = BTreeSet::new();
    for n in &tr.nodes {
        for l in &n.links {
            seen.insert(l);
            let (a, b) =
                if n.mac < *l { (n.mac.clone(), l.clone()) } else { (l.clone(), n.mac.clone()) };
            links.insert((a, b));
        }
        t.push_str(&format!(
            "{}{}\n  links ({}): {}\n  routes: {}\n",
            n.mac,
            if n.origin { " (this node)" } else { "" },
            n.links.len(),
            if n.links.is_empty() { "none".to_string() } else { n.links.join(", ") },
            n.routes.len()
        ));
        if !n.origin {
            let mut req = vec![origin.clone()];
            req.extend(n.request_path.iter().cloned());
            req.push(n.mac.clone());
            let mut ans = n.answer_path.clone();
            ans.push(origin.clone());
            t.push_str(&format!(
                "  request path: {}\n  answer path:  {}\n",
                req.join(" -> "),
                ans.join(" -> ")
            ));
        }
    }
    let silent: Vec<&str> = seen.difference(&answered).copied().collect();
    t.push_str(&format!(
        "{} node(s) answered within {} ms; {} link(s) seen",
        tr.nodes.len(),
        tr.waited_ms,
        links.len()
    ));
    if silent.is_empty() {
        t.push('\n');
    } else {
        t.push_str(&format!(
            "; linked but silent (invpn 0.4, or unreachable): {}\n",
            silent.join(", ")
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(extra: serde_json::Value) -> Status {
        let mut v = serde_json::json!({
            "version": "0.1.0", "mac": "02:50:56:00:00:01", "interface": "invpn0",
            "ifindex": 3, "mtu": 1500, "listen": null, "uptime_secs": 5, "links": 0,
            "routes": 0, "cached_nodes": 0, "workers": 2, "counters": {}, "drops": {}
        });
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn status_shows_the_congestion_control() {
        let s = status(serde_json::json!({"congestion": "bbr", "congestion_source": "default"}));
        assert!(format_status(&s).contains("\ncongestion:   bbr (default)\n"));
        // a daemon that does not say: no line
        assert!(!format_status(&status(serde_json::json!({}))).contains("congestion"));
    }

    #[test]
    fn status_shows_the_dial_targets() {
        let s = status(serde_json::json!({"dialer": {
            "seeds": 1, "confirmed": 3, "hearsay": 200, "hearsay_neighbours": 2,
            "hearsay_largest_share": 190, "hearsay_limit": 10000,
            "hearsay_per_link_limit": 2500, "refused": 250, "evicted": 2451, "expired": 88
        }}));
        assert!(format_status(&s).contains(
            "\ndial targets: 1 seeds, 3 confirmed, 200 hearsay (largest share 190 of 2500); \
             250 refused, 2451 evicted, 88 given up\n"
        ));
    }
}
