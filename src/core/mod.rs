//! The sans-IO protocol core: codec, routes, announcements, de-duplication
//! and health. Nothing here reads a clock, opens a socket or touches the
//! TAP; time comes in as [`Now`] and work goes out through [`engine::Output`].

pub mod addrs;
pub mod admission;
pub mod cache;
pub mod dedup;
pub mod deframer;
pub mod dialer;
pub mod direct;
pub mod engine;
pub mod expiry;
pub mod fq;
pub mod health;
pub mod ids;
pub mod inflight;
pub mod lane;
pub mod links;
pub mod liveness;
pub mod mac;
pub mod mesh;
pub mod offload;
pub mod ratelimit;
pub mod routes;
pub mod stats;
pub mod wire;

pub use engine::{Engine, EngineConfig, Event, Fanout, LinkCtx, Output, TapAction, Verdict};
pub use mac::Mac;

/// Identifies one link (one TLS connection) for the life of the process.
///
/// The low 8 bits name the worker thread that owns the link, so any thread
/// can tell where to hand a frame for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

impl LinkId {
    /// Most worker threads a link id can name.
    pub const MAX_WORKERS: usize = 256;

    /// The link number `seq` owned by worker `worker`.
    pub fn new(seq: u64, worker: usize) -> LinkId {
        LinkId(seq << 8 | (worker % Self::MAX_WORKERS) as u64)
    }

    /// The worker that owns this link.
    pub fn worker(self) -> usize {
        (self.0 & 0xff) as usize
    }
}

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.0 >> 8, self.worker())
    }
}

/// The time, as the shells tell it to the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// Monotonic milliseconds (any fixed origin): timers and ages.
    pub mono: u64,
    /// Milliseconds since the Unix epoch: message ids.
    pub unix_ms: u64,
}
