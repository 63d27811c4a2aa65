//! wanem: a userspace WAN between two network interfaces, for benchmarks
//! and tests on kernels without netem. Frames read from one interface are
//! sent out of the other after passing, per direction, through:
//!
//! 1. random loss (a seeded, deterministic generator),
//! 2. a link of RATE_MBIT (counting whole Ethernet frames without FCS)
//!    with a drop-tail queue of QUEUE_MS in front of it: a frame that would
//!    wait longer than QUEUE_MS for the link is dropped,
//! 3. a one-way delay of DELAY_MS plus, per frame, a jitter drawn uniformly
//!    from [0, JITTER_MS]. Jitter applies after the link, so frames can
//!    overtake each other (reordering), as with netem's `delay D J`; the
//!    link rate and the queue are unaffected by it.
//!
//! ```text
//! wanem [-s SEED] [-w WINDOW_US] IF1 IF2 DELAY_MS LOSS_PCT RATE_MBIT [QUEUE_MS] [JITTER_MS]
//! ```
//!
//! The positional form is that of the project's `wanem.py`. RATE_MBIT 0
//! means no rate limit (and so no queue); QUEUE_MS defaults to 50 ms, a
//! modest router buffer (the bandwidth-delay product of a 50 ms RTT path).
//! All values may be fractional. Run it in the namespace that holds IF1
//! and IF2, as root, with offloads off on every veth of the path (`ethtool
//! -K IF gro off gso off tso off tx off rx off`) so that frames are at most
//! one MTU; larger frames are counted as oversize and dropped.
//!
//! Each direction runs in its own thread, receiving and sending in batches
//! (recvmmsg / sendmmsg on AF_PACKET sockets). A thread sleeps in ppoll
//! until a frame arrives or the next one is due, and then sends every
//! frame due within the batching window (WINDOW_US, default 50 µs; the
//! kernel's timer slack adds up to another 50 µs): frames leave up to that
//! much early, never late by more than the wake-up latency. On SIGTERM or
//! SIGINT it prints what each direction received, forwarded and dropped.
//!
//!     cargo build --release --example wanem
//!     ip netns exec M target/release/examples/wanem wA wB 10 0.5 100

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use invpn::sys::{poll_fds, PacketSocket, PACKET_BATCH};

const USAGE: &str = "usage: wanem [-s SEED] [-w WINDOW_US] IF1 IF2 DELAY_MS LOSS_PCT RATE_MBIT [QUEUE_MS] [JITTER_MS]

A WAN between interfaces IF1 and IF2 (run as root in the namespace holding
both, offloads off): per direction, random loss of LOSS_PCT %, a link of
RATE_MBIT Mbit/s (0: unlimited) behind a drop-tail queue of QUEUE_MS
(default 50), then a one-way delay of DELAY_MS plus a uniform random jitter
in [0, JITTER_MS] (default 0; jitter reorders frames).

  -s SEED       seed of the loss and jitter generators (default 1)
  -w WINDOW_US  send frames due within this many microseconds together
                (default 50)
  -h            this help";

/// The path one direction emulates, in nanoseconds and bits per second.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Params {
    /// One-way delay.
    delay_ns: u64,
    /// Loss probability, 0 to 1.
    loss: f64,
    /// Link rate in bits per second; 0 is unlimited.
    rate_bps: f64,
    /// The longest a frame may wait for the link before it is dropped.
    queue_ns: u64,
    /// Extra delay per frame, uniform in [0, jitter_ns].
    jitter_ns: u64,
}

/// Why [`Link::offer`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Random loss.
    Lost,
    /// The queue in front of the link was full.
    TailDrop,
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    offered: u64,
    lost: u64,
    tail_dropped: u64,
    popped: u64,
}

/// A frame in flight: leaves at `due`, ties broken by arrival order.
struct InFlight<T> {
    due: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for InFlight<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl<T> Eq for InFlight<T> {}
impl<T> PartialOrd for InFlight<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for InFlight<T> {
    // reversed: BinaryHeap is a max-heap, we want the earliest first
    fn cmp(&self, o: &Self) -> Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

/// One direction of the WAN without I/O: frames are offered at a time
/// `now` (nanoseconds on any monotonic clock) and popped once due.
struct Link<T> {
    p: Params,
    rng: fastrand::Rng,
    /// When the link finishes sending the last frame it accepted.
    busy: u64,
    seq: u64,
    flight: BinaryHeap<InFlight<T>>,
    counters: Counters,
}

impl<T> Link<T> {
    fn new(p: Params, seed: u64) -> Link<T> {
        Link {
            p,
            rng: fastrand::Rng::with_seed(seed),
            busy: 0,
            seq: 0,
            flight: BinaryHeap::new(),
            counters: Counters::default(),
        }
    }

    /// Offers a frame of `len` bytes that arrived at `now`; returns when
    /// it will be due, or gives it back with the reason it was dropped.
    fn offer(&mut self, now: u64, len: usize, item: T) -> Result<u64, (Refused, T)> {
        self.counters.offered += 1;
        if self.p.loss > 0.0 && self.rng.f64() < self.p.loss {
            self.counters.lost += 1;
            return Err((Refused::Lost, item));
        }
        let start = now.max(self.busy);
        if self.p.rate_bps > 0.0 {
            if start - now > self.p.queue_ns {
                self.counters.tail_dropped += 1;
                return Err((Refused::TailDrop, item));
            }
            self.busy = start + (len as f64 * 8.0 * 1e9 / self.p.rate_bps).round() as u64;
        } else {
            self.busy = start;
        }
        let jitter = if self.p.jitter_ns > 0 { self.rng.u64(0..=self.p.jitter_ns) } else { 0 };
        let due = self.busy + self.p.delay_ns + jitter;
        self.seq += 1;
        self.flight.push(InFlight { due, seq: self.seq, item });
        Ok(due)
    }

    /// When the next frame is due, if any is in flight.
    fn next_due(&self) -> Option<u64> {
        self.flight.peek().map(|f| f.due)
    }

    /// The next frame if it is due at or before `until`.
    fn pop_due(&mut self, until: u64) -> Option<T> {
        if self.flight.peek()?.due > until {
            return None;
        }
        self.counters.popped += 1;
        self.flight.pop().map(|f| f.item)
    }

    fn in_flight(&self) -> usize {
        self.flight.len()
    }
}

/// A received frame: the first `len` bytes of `buf`.
struct Frame {
    buf: Box<[u8]>,
    len: usize,
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What one direction did, for the summary.
#[derive(Debug, Default)]
struct Summary {
    name: String,
    counters: Counters,
    forwarded: u64,
    forwarded_bytes: u64,
    send_errors: u64,
    recv_errors: u64,
    oversize: u64,
    /// Frames the kernel dropped: our receive buffer was full.
    kernel_drops: u64,
    in_flight: usize,
}

/// The longest a thread sleeps without looking at the stop flag.
const IDLE: Duration = Duration::from_millis(100);

struct Direction {
    name: String,
    rx: PacketSocket,
    tx: PacketSocket,
    link: Link<Frame>,
    bufsize: usize,
    window_ns: u64,
}

fn nanos(clock: Instant) -> u64 {
    clock.elapsed().as_nanos() as u64
}

impl Direction {
    /// Forwards frames until `stop` is set.
    fn run(mut self, clock: Instant, stop: &AtomicBool) -> Summary {
        let mut s = Summary { name: self.name.clone(), ..Summary::default() };
        let fresh = |n: usize| vec![0u8; n].into_boxed_slice();
        let _ = self.rx.take_drops(); // from before we started reading
        let mut slots: Vec<Box<[u8]>> = (0..PACKET_BATCH).map(|_| fresh(self.bufsize)).collect();
        let mut lens = [0usize; PACKET_BATCH];
        let mut pool: Vec<Box<[u8]>> = Vec::new();
        // frames taken off the link whose turn it is, oldest first
        let mut out: Vec<Frame> = Vec::with_capacity(PACKET_BATCH);
        while !stop.load(AtomicOrdering::Relaxed) {
            // send everything due within the window
            let now = nanos(clock);
            let mut blocked = false;
            loop {
                while out.len() < PACKET_BATCH {
                    match self.link.pop_due(now + self.window_ns) {
                        Some(f) => out.push(f),
                        None => break,
                    }
                }
                if out.is_empty() {
                    break;
                }
                match self.tx.send_batch(&out) {
                    Ok(0) => {
                        blocked = true;
                        break;
                    }
                    Ok(k) => {
                        s.forwarded += k as u64;
                        for f in out.drain(..k) {
                            s.forwarded_bytes += f.len as u64;
                            pool.push(f.buf);
                        }
                    }
                    Err(e) => {
                        if s.send_errors == 0 {
                            eprintln!("wanem: {}: send: {e} (frame dropped)", self.name);
                        }
                        s.send_errors += 1;
                        pool.push(out.remove(0).buf);
                    }
                }
            }
            // sleep until a frame arrives, the next one is due or (when the
            // socket buffer was full) the socket can send again
            let timeout = if blocked {
                Duration::from_micros(200)
            } else {
                match self.link.next_due() {
                    Some(d) => Duration::from_nanos(d.saturating_sub(nanos(clock))).min(IDLE),
                    None => IDLE,
                }
            };
            let mut fds = [
                libc::pollfd { fd: self.rx.raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.tx.raw_fd(), events: libc::POLLOUT, revents: 0 },
            ];
            let nfds = if blocked { 2 } else { 1 };
            if let Err(e) = poll_fds(&mut fds[..nfds], Some(timeout)) {
                eprintln!("wanem: {}: poll: {e}", self.name);
                std::thread::sleep(Duration::from_millis(10));
            }
            // take what arrived, a bounded number of batches at a time
            for _ in 0..16 {
                let n = match self.rx.recv_batch(&mut slots, &mut lens) {
                    Ok(n) => n,
                    Err(e) => {
                        if s.recv_errors == 0 {
                            eprintln!("wanem: {}: receive: {e}", self.name);
                        }
                        s.recv_errors += 1;
                        std::thread::sleep(Duration::from_millis(10));
                        break;
                    }
                };
                let now = nanos(clock);
                for (slot, &len) in slots.iter_mut().zip(&lens[..n]) {
                    if len > self.bufsize {
                        if s.oversize == 0 {
                            eprintln!(
                                "wanem: {}: dropping a {len}-byte frame, larger than the MTU: \
                                 turn offloads off (ethtool -K IF gro off gso off tso off)",
                                self.name
                            );
                        }
                        s.oversize += 1;
                        continue;
                    }
                    let next = pool.pop().unwrap_or_else(|| fresh(self.bufsize));
                    let buf = std::mem::replace(slot, next);
                    if let Err((_, f)) = self.link.offer(now, len, Frame { buf, len }) {
                        pool.push(f.buf);
                    }
                }
                if n < PACKET_BATCH {
                    break;
                }
            }
        }
        s.counters = self.link.counters;
        s.kernel_drops = self.rx.take_drops().unwrap_or(0);
        s.in_flight = self.link.in_flight() + out.len();
        s
    }
}

/// The command line, parsed.
#[derive(Debug)]
struct Args {
    if1: String,
    if2: String,
    params: Params,
    seed: u64,
    window_ns: u64,
}

fn number(what: &str, v: &str, max: f64) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=max).contains(&x) => Ok(x),
        _ => Err(format!("{what}: {v:?} is not a number from 0 to {max}")),
    }
}

fn ms_to_ns(ms: f64) -> u64 {
    (ms * 1e6).round() as u64
}

fn parse_args(argv: &[String]) -> Result<Option<Args>, String> {
    let mut o = getopts::Options::new();
    o.optopt("s", "seed", "seed of the generators", "SEED");
    o.optopt("w", "window", "batching window in microseconds", "WINDOW_US");
    o.optflag("h", "help", "help");
    let m = o.parse(argv).map_err(|e| e.to_string())?;
    if m.opt_present("h") {
        return Ok(None);
    }
    let seed = match m.opt_str("s") {
        Some(v) => v.parse::<u64>().map_err(|_| format!("seed: {v:?} is not a whole number"))?,
        None => 1,
    };
    let window_us = match m.opt_str("w") {
        Some(v) => number("window", &v, 10_000.0)?,
        None => 50.0,
    };
    let f = &m.free;
    if !(5..=7).contains(&f.len()) {
        return Err(format!("expected 5 to 7 arguments, got {}", f.len()));
    }
    if f[0] == f[1] {
        return Err("IF1 and IF2 must differ".into());
    }
    let hour_ms = 3_600_000.0;
    let params = Params {
        delay_ns: ms_to_ns(number("DELAY_MS", &f[2], hour_ms)?),
        loss: number("LOSS_PCT", &f[3], 100.0)? / 100.0,
        rate_bps: number("RATE_MBIT", &f[4], 1e6)? * 1e6,
        queue_ns: ms_to_ns(f.get(5).map_or(Ok(50.0), |v| number("QUEUE_MS", v, hour_ms))?),
        jitter_ns: ms_to_ns(f.get(6).map_or(Ok(0.0), |v| number("JITTER_MS", v, hour_ms))?),
    };
    Ok(Some(Args {
        if1: f[0].clone(),
        if2: f[1].clone(),
        params,
        seed,
        window_ns: (window_us * 1e3).round() as u64,
    }))
}

/// Socket buffers (the kernel doubles this): room for a burst of some
/// 3000 full frames, ~35 ms at 1 Gbit/s, while a thread is not scheduled.
/// Frames waiting there are not yet timestamped, so a larger buffer would
/// hide an overloaded machine as extra delay; with this one, it shows as
/// "dropped by the kernel" in the summary.
const SOCKET_BUFFER: usize = 4 << 20;

fn open_direction(a: &Args, from: &str, to: &str, seed: u64) -> Result<Direction, String> {
    let mtu = |i: &str| invpn::sys::if_mtu(i).map_err(|e| format!("{i}: {e}"));
    // an Ethernet header and a VLAN tag on top of the larger MTU
    let bufsize = mtu(from)?.max(mtu(to)?) as usize + 18;
    let rx = PacketSocket::open(from, true, SOCKET_BUFFER).map_err(|e| format!("{from}: {e}"))?;
    let tx = PacketSocket::open(to, false, SOCKET_BUFFER).map_err(|e| format!("{to}: {e}"))?;
    Ok(Direction {
        name: format!("{from}->{to}"),
        rx,
        tx,
        link: Link::new(a.params, seed),
        bufsize,
        window_ns: a.window_ns,
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wanem: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("wanem: signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let dirs = [
        open_direction(&args, &args.if1, &args.if2, args.seed),
        open_direction(&args, &args.if2, &args.if1, args.seed.wrapping_add(1)),
    ];
    let mut ready = Vec::new();
    for d in dirs {
        match d {
            Ok(d) => ready.push(d),
            Err(e) => {
                eprintln!("wanem: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let p = args.params;
    eprintln!(
        "wanem: {} <-> {}: delay {} ms + jitter 0-{} ms, loss {} %, rate {} Mbit/s, queue {} ms, seed {}",
        args.if1,
        args.if2,
        p.delay_ns as f64 / 1e6,
        p.jitter_ns as f64 / 1e6,
        p.loss * 100.0,
        p.rate_bps / 1e6,
        p.queue_ns as f64 / 1e6,
        args.seed
    );
    let clock = Instant::now();
    let summaries: Vec<Summary> = std::thread::scope(|sc| {
        let handles: Vec<_> = ready
            .into_iter()
            .map(|d| {
                let stop = &stop;
                sc.spawn(move || d.run(clock, stop))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for s in &summaries {
        let c = s.counters;
        eprintln!(
            "wanem: {}: received {}, forwarded {} ({} bytes), lost {}, tail-dropped {}, \
             oversize {}, send errors {}, receive errors {}, dropped by the kernel (receive \
             buffer full) {}, in flight at exit {}",
            s.name,
            c.offered + s.oversize,
            s.forwarded,
            s.forwarded_bytes,
            c.lost,
            c.tail_dropped,
            s.oversize,
            s.send_errors,
            s.recv_errors,
            s.kernel_drops,
            s.in_flight
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn params(delay_ms: u64, loss: f64, rate_mbit: f64, queue_ms: u64, jitter_ms: u64) -> Params {
        Params {
            delay_ns: delay_ms * MS,
            loss,
            rate_bps: rate_mbit * 1e6,
            queue_ns: queue_ms * MS,
            jitter_ns: jitter_ms * MS,
        }
    }

    #[test]
    fn a_frame_leaves_after_the_delay() {
        let mut l = Link::new(params(10, 0.0, 0.0, 50, 0), 1);
        assert_eq!(l.offer(5 * MS, 1500, 7).unwrap(), 15 * MS);
        assert_eq!(l.next_due(), Some(15 * MS));
        assert_eq!(l.pop_due(15 * MS - 1), None);
        assert_eq!(l.pop_due(15 * MS), Some(7));
        assert_eq!(l.pop_due(u64::MAX), None);
    }

    #[test]
    fn the_rate_spaces_frames_and_the_queue_drops_at_its_tail() {
        // 8 Mbit/s: a 1000-byte frame takes 1 ms; the queue holds 2 ms
        let mut l = Link::new(params(10, 0.0, 8.0, 2, 0), 1);
        assert_eq!(l.offer(0, 1000, 1).unwrap(), 11 * MS);
        assert_eq!(l.offer(0, 1000, 2).unwrap(), 12 * MS);
        assert_eq!(l.offer(0, 1000, 3).unwrap(), 13 * MS); // waits 2 ms: fits
        assert_eq!(l.offer(0, 1000, 4), Err((Refused::TailDrop, 4)));
        // once the link has drained, frames pass again
        assert_eq!(l.offer(3 * MS, 1000, 5).unwrap(), 14 * MS);
        let order: Vec<u32> = std::iter::from_fn(|| l.pop_due(u64::MAX)).collect();
        assert_eq!(order, [1, 2, 3, 5]);
        assert_eq!(l.counters.tail_dropped, 1);
    }

    #[test]
    fn an_overloaded_link_carries_its_rate() {
        // 100 Mbit/s offered 200 Mbit/s of 1500-byte frames for 1 s
        let mut l = Link::new(params(0, 0.0, 100.0, 50, 0), 1);
        let gap = 60_000; // ns between 1500-byte frames at 200 Mbit/s
        let mut bytes = 0u64;
        for i in 0..(1_000_000_000 / gap) {
            if l.offer(i * gap, 1500, ()).is_ok_and(|due| due <= 1_000_000_000) {
                bytes += 1500;
            }
        }
        let mbit = bytes as f64 * 8.0 / 1e6;
        assert!((99.0..=100.5).contains(&mbit), "{mbit} Mbit in 1 s");
        assert!(l.counters.tail_dropped > 0);
    }

    #[test]
    fn loss_takes_its_share_deterministically() {
        let run = |seed| {
            let mut l = Link::new(params(0, 0.02, 0.0, 50, 0), seed);
            let lost: Vec<bool> = (0..100_000).map(|i| l.offer(i, 100, ()).is_err()).collect();
            lost
        };
        let a = run(1);
        let share = a.iter().filter(|&&x| x).count() as f64 / a.len() as f64;
        assert!((0.018..=0.022).contains(&share), "lost {share}");
        assert_eq!(a, run(1));
        assert_ne!(a, run(2));
    }

    #[test]
    fn jitter_stays_in_bounds_and_reorders() {
        let mut l = Link::new(params(10, 0.0, 0.0, 50, 5), 1);
        let mut dues = Vec::new();
        for i in 0..10_000u64 {
            let t = i * 100_000; // a frame every 0.1 ms
            let due = l.offer(t, 100, i).unwrap();
            assert!((t + 10 * MS..=t + 15 * MS).contains(&due));
            dues.push(due);
        }
        let spread = dues.iter().enumerate().map(|(i, d)| d - i as u64 * 100_000);
        assert!(spread.clone().min().unwrap() < 10 * MS + MS / 10);
        assert!(spread.max().unwrap() > 15 * MS - MS / 10);
        let mut last_due = 0;
        let mut order = Vec::new();
        while let Some(due) = l.next_due() {
            assert!(due >= last_due);
            last_due = due;
            order.push(l.pop_due(due).unwrap());
        }
        assert_eq!(order.len(), 10_000);
        assert!(order.windows(2).any(|w| w[0] > w[1]), "jitter must reorder");
    }

    #[test]
    fn bad_arguments_are_refused() {
        let args =
            |s: &str| parse_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>());
        assert!(args("a b 10 0.5 100").unwrap().is_some());
        let a = args("-s 7 a b 10 0.5 100 20 5").unwrap().unwrap();
        assert_eq!(a.params, params(10, 0.005, 100.0, 20, 5));
        assert_eq!(a.seed, 7);
        assert!(args("-h").unwrap().is_none());
        for bad in [
            "a b 10 0.5",
            "a a 10 0 100",
            "a b -1 0 100",
            "a b 10 101 100",
            "a b 10 x 100",
            "a b 10 0 NaN",
            "a b 10 0 100 50 5 extra",
            "-s x a b 10 0 100",
            "--bogus a b 10 0 100",
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }
}
