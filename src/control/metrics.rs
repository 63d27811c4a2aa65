//! The node's counters, gauges and per-link figures in the Prometheus
//! text exposition format, version 0.0.4 (what `invpnctl metrics` prints
//! for node_exporter's textfile collector, and what the `[control]
//! metrics` listener serves). [`render`] builds it from the same
//! [`Status`] and [`LinkEntry`] values that `status` and `links` answer
//! with, so that the three always agree.
//!
//! Written by hand rather than with the `prometheus-client` crate: that
//! crate encodes OpenMetrics 1.0 only (`# EOF`, counter families named
//! without `_total`), which a 0.0.4 parser reads as untyped series, and it
//! expects metrics registered as live objects where invpnd has snapshots.
//! The 0.0.4 format is a few lines of escaping rules, tested below and by
//! a real parser in `tests/metrics.rs`.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::{LinkEntry, Status};
use crate::core::stats::Counter;

/// The Content-Type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the daemon starts).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn text(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A counter or a count.
    U(u64),
    /// A signed value (a timestamp that may be before 1970).
    I(i64),
    /// A fraction or a time in seconds.
    F(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::U(v) => write!(f, "{v}"),
            Value::I(v) => write!(f, "{v}"),
            Value::F(v) if v.is_nan() => f.write_str("NaN"),
            Value::F(v) if v.is_infinite() => f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
            Value::F(v) => write!(f, "{v}"),
        }
    }
}

/// An exposition being written: families, each a HELP and a TYPE line
/// followed by all its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts the family `name` (which must be a valid metric name: the
    /// names are constants of this file, checked by its tests).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.text());
    }

    /// One sample of the family just started.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {v}");
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, v: Value) {
        self.family(name, kind, help);
        self.sample(name, &[], v);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A HELP text: backslash and newline escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value: backslash, double quote and newline escaped.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metric name and help of each traffic counter.
fn counter_metric(c: Counter) -> (&'static str, &'static str) {
    match c {
        Counter::TapFramesIn => {
            ("invpn_tap_read_frames_total", "Frames read from the TAP interface.")
        }
        Counter::TapBytesIn => ("invpn_tap_read_bytes_total", "Bytes read from the TAP interface."),
        Counter::TapFramesOut => {
            ("invpn_tap_written_frames_total", "Frames written to the TAP interface.")
        }
        Counter::TapBytesOut => {
            ("invpn_tap_written_bytes_total", "Bytes written to the TAP interface.")
        }
        Counter::FramesForwarded => {
            ("invpn_forwarded_frames_total", "Frames forwarded from one link to another.")
        }
        Counter::MessagesIn => ("invpn_received_messages_total", "Messages received on links."),
        Counter::ControlIn => (
            "invpn_received_control_messages_total",
            "Control messages (announcements, prunes, route tables, hellos, health) received on \
             links.",
        ),
        Counter::AnnouncementsAccepted => {
            ("invpn_announcements_accepted_total", "Announcements that changed a route.")
        }
        Counter::UnknownTypes => {
            ("invpn_unknown_messages_total", "Messages of unknown types received (ignored).")
        }
        Counter::OffloadedIn => {
            ("invpn_offloaded_received_total", "Offloaded super-frames received from neighbours.")
        }
        Counter::ConnectionsRefused => (
            "invpn_connections_refused_total",
            "Incoming connections closed before their handshake: too many were pending.",
        ),
        Counter::LaneFrames => {
            ("invpn_lane_frames_total", "Frames sent on a link's lane rather than the link.")
        }
        Counter::TwinsIn => {
            ("invpn_twins_received_total", "Twin copies of sparse frames received first, and kept.")
        }
        Counter::TwinsDiscarded => (
            "invpn_twins_discarded_total",
            "Twin copies of sparse frames whose copy had come first: discarded.",
        ),
        Counter::StripeFrames => {
            ("invpn_stripe_frames_total", "Frames of bulk flows sent on a stripe of a link.")
        }
        Counter::SoftwareSegments => {
            ("invpn_software_segments_total", "Frames cut out of super-frames in software.")
        }
        Counter::PrunesSent => (
            "invpn_prunes_sent_total",
            "Sources whose floods a neighbour was asked not to send (flood tree).",
        ),
        Counter::GraftsSent => (
            "invpn_grafts_sent_total",
            "Sources whose floods a neighbour was asked to send again (flood tree).",
        ),
        Counter::PrunesReceived => (
            "invpn_prunes_received_total",
            "Sources whose floods neighbours asked this node not to send (flood tree).",
        ),
        Counter::GraftsReceived => (
            "invpn_grafts_received_total",
            "Sources whose floods neighbours asked this node to send again (flood tree).",
        ),
    }
}

fn secs_us(us: u64) -> Value {
    Value::F(us as f64 / 1e6)
}

/// The whole exposition of a node: `status` and `links` as answered at
/// `now_unix` (seconds since the epoch, for the timestamps of things
/// given as durations).
pub fn render(s: &Status, links: &[LinkEntry], now_unix: f64) -> String {
    let mut x = Exposition::default();
    x.family("invpn_build_info", Kind::Gauge, "The invpnd version running (always 1).");
    x.sample("invpn_build_info", &[("version", &s.version)], Value::U(1));
    x.family("invpn_node_info", Kind::Gauge, "The node's MAC and interface (always 1).");
    x.sample("invpn_node_info", &[("mac", &s.mac), ("interface", &s.interface)], Value::U(1));
    x.single(
        "invpn_start_time_seconds",
        Kind::Gauge,
        "When the daemon started or last restarted in place (Unix time).",
        Value::F((now_unix - s.uptime_secs as f64).floor()),
    );
    x.single(
        "invpn_interface_mtu_bytes",
        Kind::Gauge,
        "The TAP interface's MTU.",
        Value::U(s.mtu.into()),
    );
    x.single("invpn_links", Kind::Gauge, "Links established now.", Value::U(s.links as u64));
    x.single(
        "invpn_routes",
        Kind::Gauge,
        "Nodes this node has a route to.",
        Value::U(s.routes as u64),
    );
    x.single(
        "invpn_cached_nodes",
        Kind::Gauge,
        "Nodes in the node cache (addresses to dial).",
        Value::U(s.cached_nodes as u64),
    );
    x.single("invpn_workers", Kind::Gauge, "Worker threads.", Value::U(s.workers as u64));
    x.single(
        "invpn_direct_links",
        Kind::Gauge,
        "Links dialled on demand because traffic to their node went through a relay.",
        Value::U(s.direct_links as u64),
    );
    x.single(
        "invpn_pending_handshakes",
        Kind::Gauge,
        "Incoming connections whose TLS handshake is pending.",
        Value::U(s.pending_handshakes as u64),
    );
    x.family(
        "invpn_dedup_sources",
        Kind::Gauge,
        "Sources tracked by the de-duplication windows, by what they send.",
    );
    x.sample("invpn_dedup_sources", &[("kind", "broadcast")], Value::U(s.dedup_sources as u64));
    x.sample("invpn_dedup_sources", &[("kind", "health")], Value::U(s.health_sources as u64));
    let d = &s.dialer;
    x.family("invpn_dial_targets", Kind::Gauge, "Nodes the dialer may dial, by kind of address.");
    x.sample("invpn_dial_targets", &[("kind", "seed")], Value::U(d.seeds as u64));
    x.sample("invpn_dial_targets", &[("kind", "confirmed")], Value::U(d.confirmed as u64));
    x.sample("invpn_dial_targets", &[("kind", "hearsay")], Value::U(d.hearsay as u64));
    x.single(
        "invpn_dial_hearsay_largest_share",
        Kind::Gauge,
        "The most announced addresses charged to one neighbour.",
        Value::U(d.hearsay_largest_share as u64),
    );
    x.family(
        "invpn_dial_addresses_total",
        Kind::Counter,
        "Announced addresses refused as unusable, evicted to make room, or given up.",
    );
    x.sample("invpn_dial_addresses_total", &[("fate", "refused")], Value::U(d.refused));
    x.sample("invpn_dial_addresses_total", &[("fate", "evicted")], Value::U(d.evicted));
    x.sample("invpn_dial_addresses_total", &[("fate", "expired")], Value::U(d.expired));
    x.single(
        "invpn_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
        "When the node's certificate expires (notAfter, Unix time).",
        Value::I(s.cert_not_after),
    );
    x.family(
        "invpn_ca_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
        "When each CA certificate expires (notAfter, Unix time), by subject.",
    );
    for (subject, t) in &s.ca_not_after {
        x.sample(
            "invpn_ca_certificate_expiry_timestamp_seconds",
            &[("subject", subject)],
            Value::I(*t),
        );
    }
    for c in Counter::ALL {
        let (name, help) = counter_metric(*c);
        let v = s.counters.get(c.label()).copied().unwrap_or(0);
        x.single(name, Kind::Counter, help, Value::U(v));
    }
    x.family(
        "invpn_dropped_total",
        Kind::Counter,
        "Messages and frames dropped, by reason (see DROP COUNTERS in invpnctl(8)).",
    );
    for (reason, n) in &s.drops {
        x.sample("invpn_dropped_total", &[("reason", reason)], Value::U(*n));
    }
    x.family(
        "invpn_link_closes_total",
        Kind::Counter,
        "Links and connections closed, by cause (see CLOSE CAUSES in invpnctl(8)).",
    );
    for (cause, n) in &s.closes {
        x.sample("invpn_link_closes_total", &[("cause", cause)], Value::U(*n));
    }
    x.family("invpn_malformed_messages_total", Kind::Counter, "Malformed messages, by class.");
    for (class, n) in &s.malformed {
        x.sample("invpn_malformed_messages_total", &[("class", class)], Value::U(*n));
    }
    render_links(&mut x, links, now_unix);
    x.finish()
}

/// A per-link family: name, type, help, and the value of a link.
type LinkFamily = (&'static str, Kind, &'static str, fn(&LinkEntry, f64) -> Option<Value>);

const LINK_FAMILIES: &[LinkFamily] = &[
    (
        "invpn_link_start_time_seconds",
        Kind::Gauge,
        "When the link came up (Unix time).",
        |l, now| Some(Value::F((now - l.uptime_secs as f64).floor())),
    ),
    (
        "invpn_link_received_bytes_total",
        Kind::Counter,
        "Bytes received on the link's TCP connection (TLS included).",
        |l, _| Some(Value::U(l.bytes_in)),
    ),
    (
        "invpn_link_sent_bytes_total",
        Kind::Counter,
        "Bytes sent on the link's TCP connection (TLS included).",
        |l, _| Some(Value::U(l.bytes_out)),
    ),
    (
        "invpn_link_received_messages_total",
        Kind::Counter,
        "Messages received on the link.",
        |l, _| Some(Value::U(l.messages_in)),
    ),
    ("invpn_link_sent_messages_total", Kind::Counter, "Messages sent on the link.", |l, _| {
        Some(Value::U(l.messages_out))
    }),
    ("invpn_link_lane_received_bytes_total", Kind::Counter, "Bytes received on the link's lane, the second connection for sparse flows (0 without one; from 0 again when a new lane replaces it).", |l, _| {
        Some(Value::U(l.lane_bytes_in))
    }),
    ("invpn_link_lane_sent_bytes_total", Kind::Counter, "Bytes sent on the link's lane (0 without one; from 0 again when a new lane replaces it).", |l, _| {
        Some(Value::U(l.lane_bytes_out))
    }),
    ("invpn_link_lane_received_messages_total", Kind::Counter, "Messages received on the link's lane.", |l, _| {
        Some(Value::U(l.lane_messages_in))
    }),
    ("invpn_link_lane_sent_messages_total", Kind::Counter, "Messages sent on the link's lane.", |l, _| {
        Some(Value::U(l.lane_messages_out))
    }),
    ("invpn_link_queued_bytes", Kind::Gauge, "Bytes waiting in the link's queue.", |l, _| {
        Some(Value::U(l.queued_bytes))
    }),
    (
        "invpn_link_queue_delay_seconds",
        Kind::Gauge,
        "How long the oldest frame in the link's queue had waited when the link last sent.",
        |l, _| Some(secs_us(l.queue_delay_us)),
    ),
    (
        "invpn_link_dropped_messages_total",
        Kind::Counter,
        "Messages dropped by the link's queue (CoDel, or the queue full).",
        |l, _| Some(Value::U(l.dropped)),
    ),
    (
        "invpn_link_codel_drops_total",
        Kind::Counter,
        "Frames CoDel dropped: their flow's queueing delay stayed above target.",
        |l, _| Some(Value::U(l.codel_drops)),
    ),
    (
        "invpn_link_ecn_marks_total",
        Kind::Counter,
        "Frames marked Congestion Experienced (ECN) instead of dropped.",
        |l, _| Some(Value::U(l.ecn_marks)),
    ),
    (
        "invpn_link_malformed_messages_total",
        Kind::Counter,
        "Malformed messages received on the link.",
        |l, _| Some(Value::U(l.malformed)),
    ),
    (
        "invpn_link_rtt_seconds",
        Kind::Gauge,
        "The TCP connection's smoothed round-trip time (kernel TCP_INFO).",
        |l, _| Some(secs_us(l.rtt_us)),
    ),
    (
        "invpn_link_rtt_deviation_seconds",
        Kind::Gauge,
        "The mean deviation of the round-trip time (kernel TCP_INFO).",
        |l, _| Some(secs_us(l.rttvar_us)),
    ),
    (
        "invpn_link_inflight_bytes",
        Kind::Gauge,
        "Bytes sent on the link's socket and not yet acknowledged.",
        |l, _| Some(Value::U(l.inflight_bytes)),
    ),
    ("invpn_link_unsent_bytes", Kind::Gauge, "Bytes in the link's socket not yet sent.", |l, _| {
        Some(Value::U(l.unsent_bytes))
    }),
    (
        "invpn_link_last_receive_timestamp_seconds",
        Kind::Gauge,
        "When anything was last received on the link (Unix time, to within half a second).",
        |l, now| {
            // in whole milliseconds, so that the decimal is short
            let ms = (now * 1000.0).round() - l.last_rx_ms as f64;
            Some(Value::F(ms / 1000.0))
        },
    ),
    (
        "invpn_link_routes",
        Kind::Gauge,
        "Routes learnt through the link (its share is [limits] routes_per_link).",
        |l, _| Some(Value::U(l.routes)),
    ),
    (
        "invpn_peer_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
        "When the peer's certificate expires (notAfter, Unix time).",
        |l, _| (l.peer_cert_not_after != 0).then_some(Value::I(l.peer_cert_not_after)),
    ),
];

fn render_links(x: &mut Exposition, links: &[LinkEntry], now: f64) {
    // one series per peer (a node keeps one link per peer; should two
    // show up while one replaces the other, the first is shown)
    let mut seen = HashSet::new();
    let links: Vec<&LinkEntry> = links.iter().filter(|l| seen.insert(&l.peer)).collect();
    x.family(
        "invpn_link_info",
        Kind::Gauge,
        "Each link: its peer's address, who dialled, the protocol (always 1).",
    );
    for l in &links {
        x.sample(
            "invpn_link_info",
            &[
                ("peer", &l.peer),
                ("address", &l.addr),
                ("direction", &l.direction),
                ("protocol", &l.protocol),
            ],
            Value::U(1),
        );
    }
    for (name, kind, help, value) in LINK_FAMILIES {
        x.family(name, *kind, help);
        for l in &links {
            if let Some(v) = value(l, now) {
                x.sample(name, &[("peer", &l.peer)], v);
            }
        }
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
