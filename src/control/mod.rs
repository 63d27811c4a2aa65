//! The control interface: JSON lines over a Unix socket (`[control]
//! socket`, mode 0600). A client connects, sends one request line, reads one
//! response line, and the daemon closes the connection.
//!
//! ```text
//! -> {"cmd":"status"}
//! <- {"ok":true,"result":{...}}
//! -> {"cmd":"trace","wait_ms":2000}
//! <- {"ok":false,"error":"..."}
//! ```
//!
//! `follow` is the one streaming request: after its response line the
//! connection stays open and carries one [`FollowLine`] per log line, until
//! the client closes it:
//!
//! ```text
//! -> {"cmd":"follow"}
//! <- {"ok":true,"result":{"level":"info","previous":null}}
//! <- {"line":{"time_ms":1764771688123,"level":"INFO","msg":"link up: ..."}}
//! <- {"dropped":12}
//! ```
//!
//! Requests that change the daemon's state ([`Request::changes_state`])
//! are answered only for root or the daemon's own user, whatever the
//! socket's mode (the peer's credentials are asked of the kernel).

pub mod client;
pub mod dot;
pub mod metrics;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 4096;
/// Longest a trace may wait for answers (ms).
pub const MAX_TRACE_WAIT: u64 = 60_000;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// The node: identity, interface, counters.
    Status,
    /// Every link.
    Links,
    /// Every route.
    Routes,
    /// Floods a health request and collects the answers for `wait_ms`.
    Trace {
        /// How long to collect answers (ms).
        wait_ms: u64,
    },
    /// Everything `status` and `links` show, in the Prometheus text
    /// exposition format (the answer is one string; see [`metrics`]).
    Metrics,
    /// Re-reads the configuration and TLS material, as SIGHUP does.
    Reload,
    /// Re-executes the daemon in place, as SIGUSR2 does (answered before).
    Restart,
    /// The log level of invpnd's own messages; sets it if `level` is given.
    Log {
        /// The new level (`error` ... `trace`), or `None` to ask.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level: Option<String>,
    },
    /// Streams the daemon's log lines (see the module's documentation).
    Follow,
}

impl Request {
    /// Whether it changes the daemon's state (and so needs root or the
    /// daemon's user).
    pub fn changes_state(&self) -> bool {
        matches!(self, Request::Reload | Request::Restart | Request::Log { level: Some(_) })
    }

    /// Its name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Links => "links",
            Request::Routes => "routes",
            Request::Trace { .. } => "trace",
            Request::Metrics => "metrics",
            Request::Reload => "reload",
            Request::Restart => "restart",
            Request::Log { level: Some(_) } => "log --level",
            Request::Log { level: None } => "log",
            Request::Follow => "log -f",
        }
    }
}

/// The answer to `reload`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Whether the new configuration was applied (else nothing changed).
    pub applied: bool,
    /// Why it was refused (`file:line: [section] key: ...` for settings).
    pub errors: Vec<String>,
    /// What is worth a look but did not stop it.
    pub warnings: Vec<String>,
    /// What was applied.
    pub changed: Vec<String>,
    /// Links closed because their peer's certificate no longer verifies
    /// (revoked, another CA...): `MAC: reason`.
    pub closed: Vec<String>,
    /// Changed settings that take effect on a restart in place
    /// (`invpnctl restart`, SIGUSR2).
    pub restart_needed: Vec<String>,
    /// Changed settings that need a full stop and start.
    pub full_restart_needed: Vec<String>,
}

/// The answer to `restart`, sent before the daemon re-executes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartReport {
    /// Whether the daemon is re-executing now (else it keeps running as it
    /// was).
    pub restarting: bool,
    /// Why it refused.
    pub errors: Vec<String>,
    /// What is worth a look but did not stop it.
    pub warnings: Vec<String>,
    /// Changed settings the new process applies.
    pub applied_by_restart: Vec<String>,
    /// Changed settings that still need a full stop and start.
    pub full_restart_needed: Vec<String>,
}

/// The answer to `log` and `follow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLevel {
    /// The level of invpnd's own messages now.
    pub level: String,
    /// The level before, when the request set it.
    pub previous: Option<String>,
}

/// One line of a `follow` stream after its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowLine {
    /// A log line.
    Line {
        /// When it was logged (ms since the Unix epoch).
        time_ms: u64,
        /// Its level: `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
        level: String,
        /// The message.
        msg: String,
    },
    /// This many lines were dropped here: the client read too slowly.
    Dropped(u64),
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded (`result` set) or not (`error` set).
    pub ok: bool,
    /// The answer: one of this module's types, as JSON.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result: Option<serde_json::Value>,
    /// Why the request failed, for people.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl Response {
    /// A successful answer.
    pub fn ok(v: impl Serialize) -> Response {
        match serde_json::to_value(v) {
            Ok(v) => Response { ok: true, result: Some(v), error: None },
            Err(e) => Response::err(format!("cannot encode the answer: {e}")),
        }
    }

    /// A refusal.
    pub fn err(msg: impl Into<String>) -> Response {
        Response { ok: false, result: None, error: Some(msg.into()) }
    }

    /// One line of JSON, newline included.
    pub fn to_line(&self) -> String {
        Response::line_of(self)
    }

    /// Any value as one line of JSON, newline included (the lines of a
    /// `follow` stream).
    pub fn line_of(v: &impl Serialize) -> String {
        let mut s = serde_json::to_string(v)
            .unwrap_or_else(|_| r#"{"ok":false,"error":"encoding failed"}"#.to_string());
        s.push('\n');
        s
    }
}

/// Parses a request line, with an operator-readable error.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let r: Request = serde_json::from_str(line.trim()).map_err(|e| {
        if e.to_string().contains("unknown variant") {
            format!("unknown request: {e}")
        } else {
            format!("bad request: {e}")
        }
    })?;
    if let Request::Trace { wait_ms } = r {
        if wait_ms == 0 || wait_ms > MAX_TRACE_WAIT {
            return Err(format!("trace wait must be 1 to {MAX_TRACE_WAIT} ms, not {wait_ms}"));
        }
    }
    Ok(r)
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// invpnd's version.
    pub version: String,
    /// The node's MAC (its certificate's CN).
    pub mac: String,
    /// The TAP interface's name.
    pub interface: String,
    /// Its interface index.
    pub ifindex: u32,
    /// Its MTU.
    pub mtu: u16,
    /// `None` when the node takes no connections.
    pub listen: Option<String>,
    /// Seconds since the daemon started or last restarted in place.
    pub uptime_secs: u64,
    /// Links up.
    pub links: usize,
    /// Routes in the table.
    pub routes: usize,
    /// Nodes in the node cache.
    pub cached_nodes: usize,
    /// Worker threads.
    pub workers: usize,
    /// Traffic counters by label (`core::stats::Counter`).
    pub counters: BTreeMap<String, u64>,
    /// Drops by reason (DROP COUNTERS in invpnctl(8)).
    pub drops: BTreeMap<String, u64>,
    /// Malformed messages by class.
    #[serde(default)]
    pub malformed: BTreeMap<String, u64>,
    /// Links (and connections that never became links) closed, by cause
    /// (see CLOSE CAUSES in invpnctl(8)).
    #[serde(default)]
    pub closes: BTreeMap<String, u64>,
    /// Incoming handshakes pending now.
    #[serde(default)]
    pub pending_handshakes: usize,
    /// Of `links`, the direct links (dialled on demand because traffic to
    /// the neighbour went through a relay; `[network] direct`).
    #[serde(default)]
    pub direct_links: usize,
    /// The TCP congestion control new links get, read back from a socket
    /// (empty from a daemon that does not say).
    #[serde(default)]
    pub congestion: String,
    /// Why that one: `configured`, `default`, `system default`, or
    /// `system default; bbr unavailable`.
    #[serde(default)]
    pub congestion_source: String,
    /// The node certificate's notAfter (Unix seconds).
    #[serde(default)]
    pub cert_not_after: i64,
    /// Each CA certificate's notAfter (Unix seconds), by subject.
    #[serde(default)]
    pub ca_not_after: BTreeMap<String, i64>,
    /// Sources the de-duplication window of broadcasts tracks.
    #[serde(default)]
    pub dedup_sources: usize,
    /// Sources the de-duplication window of health requests tracks.
    #[serde(default)]
    pub health_sources: usize,
    /// The dialer's targets and what became of announced addresses.
    #[serde(default)]
    pub dialer: DialerStatus,
}

/// `status`'s `dialer`: the nodes this node may dial, by class (see
/// invpnd(8), DIALLING).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialerStatus {
    /// Nodes with a seed (`[network] init`).
    pub seeds: usize,
    /// Nodes with an address a link we dialled proved.
    pub confirmed: usize,
    /// Addresses announced by neighbours (or read from the cache), not yet
    /// proved.
    pub hearsay: usize,
    /// Neighbours with hearsay charged to them.
    pub hearsay_neighbours: usize,
    /// The most hearsay charged to one neighbour.
    pub hearsay_largest_share: usize,
    /// `[limits] dial_targets`.
    pub hearsay_limit: usize,
    /// `[limits] dial_targets_per_link`.
    pub hearsay_per_link_limit: usize,
    /// Announced addresses refused as unusable (loopback, multicast, ...),
    /// since start.
    pub refused: u64,
    /// Hearsay evicted to make room, since start.
    pub evicted: u64,
    /// Hearsay given up: failed too often, or not announced for an hour.
    pub expired: u64,
}

/// One entry of `links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEntry {
    /// The neighbour's MAC.
    pub peer: String,
    /// Its address and port on the TCP connection.
    pub addr: String,
    /// "in" or "out".
    pub direction: String,
    /// Whether it is a direct link: dialled on demand because traffic to
    /// the neighbour went through a relay; it counts against `max_links`
    /// at neither end and closes once idle.
    #[serde(default)]
    pub direct: bool,
    /// "invpnd" (ALPN invpn/2) or "invpn-0.4".
    pub protocol: String,
    /// Seconds since the link came up.
    pub uptime_secs: u64,
    /// Bytes received (TLS records included).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Bytes waiting in the link's queues (here and below, the queue of
    /// its lane included).
    pub queued_bytes: u64,
    /// How long the oldest frame in the link's queue had waited when the
    /// link was last flushed (µs); 0 when nothing waits.
    #[serde(default)]
    pub queue_delay_us: u64,
    /// Frames dropped by the link's queues.
    pub dropped: u64,
    /// Of `dropped`: frames CoDel dropped because their flow's queueing
    /// delay stayed above target.
    #[serde(default)]
    pub codel_drops: u64,
    /// Frames marked CE (ECN) instead of dropped.
    #[serde(default)]
    pub ecn_marks: u64,
    /// Malformed messages received.
    pub malformed: u64,
    /// Whether the link has lanes (more connections to the neighbour: for
    /// the frames of sparse flows, and stripes for bulk ones).
    #[serde(default)]
    pub lane: bool,
    /// How many lanes it has (sparse lanes and stripes).
    #[serde(default)]
    pub lanes: u64,
    /// Bytes received on its lanes, all together.
    #[serde(default)]
    pub lane_bytes_in: u64,
    /// Bytes sent on its lanes.
    #[serde(default)]
    pub lane_bytes_out: u64,
    /// Messages received on its lanes.
    #[serde(default)]
    pub lane_messages_in: u64,
    /// Messages sent on its lanes.
    #[serde(default)]
    pub lane_messages_out: u64,
    /// Messages sent (handed to TLS).
    #[serde(default)]
    pub messages_out: u64,
    /// The TCP connection's smoothed round-trip time (µs, from the
    /// kernel's `TCP_INFO`, sampled every half second).
    #[serde(default)]
    pub rtt_us: u64,
    /// Its mean deviation (µs).
    #[serde(default)]
    pub rttvar_us: u64,
    /// How long ago anything was last received on the link (ms, to within
    /// half a second).
    #[serde(default)]
    pub last_rx_ms: u64,
    /// Bytes sent and not yet acknowledged by the peer's kernel.
    #[serde(default)]
    pub inflight_bytes: u64,
    /// Bytes in the socket not yet sent.
    #[serde(default)]
    pub unsent_bytes: u64,
    /// The peer certificate's notAfter (Unix seconds; 0 if unknown).
    #[serde(default)]
    pub peer_cert_not_after: i64,
    /// Routes learnt through the link (charged to its share,
    /// `[limits] routes_per_link`).
    #[serde(default)]
    pub routes: u64,
}

/// One entry of `routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// The node's MAC.
    pub target: String,
    /// The neighbour frames for it go to.
    pub next_hop: String,
    /// The second path, if one is known.
    pub alternative: Option<String>,
    /// Seconds since the node's announcement last refreshed it.
    pub age_secs: u64,
    /// The address the node announced, if any.
    pub addr: Option<String>,
}

/// One node's answer to a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceNode {
    /// The node's MAC.
    pub mac: String,
    /// The node that asked (its own state, not an answer from the wire).
    pub origin: bool,
    /// Its neighbours' MACs.
    pub links: Vec<String>,
    /// (target, next hop) pairs.
    pub routes: Vec<(String, String)>,
    /// The nodes the request went through to reach this one.
    pub request_path: Vec<String>,
    /// This node, then each node that forwarded its answer.
    pub answer_path: Vec<String>,
}

/// `trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The id of the health request flooded.
    pub request_id: u64,
    /// How long answers were collected (ms).
    pub waited_ms: u64,
    /// The nodes that answered, this node first.
    pub nodes: Vec<TraceNode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_or_explain() {
        assert_eq!(parse_request(r#"{"cmd":"status"}"#), Ok(Request::Status));
        assert_eq!(
            parse_request("{\"cmd\":\"trace\",\"wait_ms\":500}\n"),
            Ok(Request::Trace { wait_ms: 500 })
        );
        assert!(parse_request(r#"{"cmd":"reboot"}"#).unwrap_err().starts_with("unknown request"));
        assert!(parse_request("status").unwrap_err().starts_with("bad request"));
        assert!(parse_request(r#"{"cmd":"trace"}"#).unwrap_err().contains("wait_ms"));
        assert!(parse_request(r#"{"cmd":"trace","wait_ms":0}"#).unwrap_err().contains("1 to"));
        let log = parse_request(r#"{"cmd":"log","level":"debug"}"#).unwrap();
        assert_eq!(log, Request::Log { level: Some("debug".into()) });
        assert!(log.changes_state() && !parse_request(r#"{"cmd":"log"}"#).unwrap().changes_state());
        for (line, req) in [
            (r#"{"cmd":"reload"}"#, Request::Reload),
            (r#"{"cmd":"restart"}"#, Request::Restart),
            (r#"{"cmd":"follow"}"#, Request::Follow),
        ] {
            assert_eq!(parse_request(line), Ok(req.clone()));
            assert_eq!(serde_json::to_string(&req).unwrap(), line);
        }
        assert!(Request::Restart.changes_state() && !Request::Follow.changes_state());
    }

    #[test]
    fn follow_lines_are_tagged() {
        let l = FollowLine::Line { time_ms: 5, level: "INFO".into(), msg: "hi".into() };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"line":{"time_ms":5,"level":"INFO","msg":"hi"}}"#
        );
        assert_eq!(serde_json::to_string(&FollowLine::Dropped(3)).unwrap(), r#"{"dropped":3}"#);
    }

    #[test]
    fn responses_are_one_line() {
        let l = Response::ok(vec![1, 2]).to_line();
        assert_eq!(l, "{\"ok\":true,\"result\":[1,2]}\n");
        let e = Response::err("no\nway").to_line();
        assert_eq!(e.matches('\n').count(), 1);
        let back: Response = serde_json::from_str(&e).unwrap();
        assert_eq!(back.error.as_deref(), Some("no\nway"));
    }
}
