//! Log output for operators: `LEVEL message` with a UTC timestamp on a
//! terminal or in a file, or with syslog priority prefixes (`<3>` ...) and no
//! timestamp under systemd's journal, which adds its own.
//!
//! The level of invpnd's own messages can change while it runs
//! (`invpnctl log --level`, [`set_level`]): the filter from `RUST_LOG` or
//! `-v` decides until then, and again after `--level default`. Lines may
//! also be followed over the control socket (`invpnctl log -f`): each
//! follower has a bounded queue ([`FOLLOW_QUEUE`] lines); a follower that
//! reads too slowly loses lines, counted, and never slows the daemon.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Lines a follower's queue holds; more are dropped (and counted) until it
/// reads.
pub const FOLLOW_QUEUE: usize = 2048;

/// The level names `set_level` takes, quietest first (`default` goes back
/// to the start-up filter).
pub const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace", "default"];

/// One log line for a follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// Its level.
    pub level: Level,
    /// The message, without time or level.
    pub msg: String,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<Line>,
    dropped: u64,
}

/// The followers' queues and how to wake whoever delivers them.
#[derive(Default)]
struct Hub {
    queues: Mutex<HashMap<u64, Queue>>,
    /// Followers now (checked without the lock on every line).
    count: AtomicUsize,
    next: AtomicUsize,
    wake: OnceLock<Arc<dyn Fn() + Send + Sync>>,
}

static HUB: OnceLock<Hub> = OnceLock::new();

fn hub() -> &'static Hub {
    HUB.get_or_init(Hub::default)
}

/// A follower of the log, by id (see [`follow`]).
pub type FollowerId = u64;

/// Starts following the log: lines logged from now on are queued for the
/// returned id until [`unfollow`].
pub fn follow() -> FollowerId {
    let h = hub();
    let id = h.next.fetch_add(1, Ordering::Relaxed) as u64;
    if let Ok(mut q) = h.queues.lock() {
        q.insert(id, Queue::default());
        h.count.store(q.len(), Ordering::Release);
    }
    id
}

/// Stops following.
pub fn unfollow(id: FollowerId) {
    let h = hub();
    if let Ok(mut q) = h.queues.lock() {
        q.remove(&id);
        h.count.store(q.len(), Ordering::Release);
    }
}

/// How many follow the log now.
pub fn followers() -> usize {
    hub().count.load(Ordering::Acquire)
}

/// Takes up to `max` queued lines of follower `id`, with the number of
/// lines dropped before them (its queue was full) since the last take.
pub fn take(id: FollowerId, max: usize) -> (u64, Vec<Line>) {
    let Ok(mut q) = hub().queues.lock() else { return (0, Vec::new()) };
    let Some(f) = q.get_mut(&id) else { return (0, Vec::new()) };
    let n = max.min(f.lines.len());
    (std::mem::take(&mut f.dropped), f.lines.drain(..n).collect())
}

/// Sets what to call when a line is queued for a follower (the control
/// socket's loop wakes and delivers it). Set once.
pub fn on_line(wake: Arc<dyn Fn() + Send + Sync>) {
    let _ = hub().wake.set(wake);
}

fn publish(r: &Record<'_>) {
    let h = hub();
    if h.count.load(Ordering::Acquire) == 0 {
        return;
    }
    let line = Line {
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        level: r.level(),
        msg: r.args().to_string(),
    };
    if let Ok(mut q) = h.queues.lock() {
        for f in q.values_mut() {
            if f.lines.len() < FOLLOW_QUEUE {
                f.lines.push_back(line.clone());
            } else {
                f.dropped += 1;
            }
        }
    }
    if let Some(w) = h.wake.get() {
        w();
    }
}

/// The level set at run time for invpn's own messages: 0 = none (the
/// start-up filter decides), else a `LevelFilter` as usize + 1.
static OVERRIDE: AtomicUsize = AtomicUsize::new(0);

fn own(target: &str) -> bool {
    target.starts_with("invpn")
}

fn override_level() -> Option<LevelFilter> {
    match OVERRIDE.load(Ordering::Relaxed) {
        0 => None,
        n => LevelFilter::iter().nth(n - 1),
    }
}

/// The logger: the start-up filter (`decide`) or the run-time level picks
/// the lines, `write` formats and writes them, followers get a copy.
struct Logger {
    decide: env_logger::Logger,
    write: env_logger::Logger,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        match override_level() {
            Some(l) if own(m.target()) => m.level() <= l,
            _ => self.decide.enabled(m),
        }
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            self.write.log(r);
            publish(r);
        }
    }

    fn flush(&self) {
        self.write.flush();
    }
}

static LOGGER: OnceLock<&'static Logger> = OnceLock::new();

/// Sets up logging: `RUST_LOG` if set, else info (`verbose` 1: debug,
/// 2 or more: trace) for invpn's own modules and warnings for libraries.
pub fn init(verbose: usize) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let default = format!("warn,invpn={level},invpnd={level},invpnctl={level}");
    let decide =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .build();
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = env_logger::Builder::new();
    b.filter_level(LevelFilter::Trace);
    if journal {
        b.format(|f, r| {
            let prio = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            writeln!(f, "<{prio}>{}", r.args())
        });
    } else {
        b.format(|f, r| writeln!(f, "{} {:<5} {}", f.timestamp_millis(), r.level(), r.args()));
    }
    let max = decide.filter();
    let logger: &'static Logger = Box::leak(Box::new(Logger { decide, write: b.build() }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
        let _ = LOGGER.set(logger);
    }
}

/// The level of invpn's own messages now, as a name of [`LEVELS`].
pub fn level() -> String {
    if let Some(l) = override_level() {
        return l.as_str().to_ascii_lowercase();
    }
    let Some(lg) = LOGGER.get() else { return log::max_level().as_str().to_ascii_lowercase() };
    let on = |l: Level| lg.decide.enabled(&Metadata::builder().level(l).target("invpn").build());
    Level::iter()
        .filter(|l| on(*l))
        .last()
        .map_or("off".to_string(), |l| l.as_str().to_ascii_lowercase())
}

/// Sets the level of invpn's own messages (libraries keep theirs); `default`
/// returns to the start-up filter. Returns the level before.
pub fn set_level(name: &str) -> Result<String, String> {
    let before = level();
    let new = match name.to_ascii_lowercase().as_str() {
        "default" => None,
        n => Some(n.parse::<LevelFilter>().map_err(|_| {
            format!("unknown log level {name:?}: expected one of {}", LEVELS.join(", "))
        })?),
    };
    OVERRIDE.store(new.map_or(0, |l| l as usize + 1), Ordering::Relaxed);
    let base = LOGGER.get().map_or(LevelFilter::Info, |l| l.decide.filter());
    log::set_max_level(new.map_or(base, |l| l.max(base)));
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_get_lines_and_count_what_they_miss() {
        let a = follow();
        let rec = |msg: &str| {
            publish(
                &Record::builder()
                    .args(format_args!("{msg}"))
                    .level(Level::Warn)
                    .target("invpn::test")
                    .build(),
            )
        };
        rec("one");
        let (dropped, lines) = take(a, 10);
        assert_eq!((dropped, lines.len()), (0, 1));
        assert_eq!((lines[0].level, lines[0].msg.as_str()), (Level::Warn, "one"));
        for _ in 0..FOLLOW_QUEUE + 5 {
            rec("x");
        }
        let (dropped, lines) = take(a, FOLLOW_QUEUE * 2);
        // other tests may publish too: at least what this one dropped
        assert!(dropped >= 5 && lines.len() == FOLLOW_QUEUE, "{dropped} {}", lines.len());
        unfollow(a);
        rec("gone");
        assert_eq!(take(a, 10), (0, Vec::new()));
    }

    #[test]
    fn levels_parse_or_explain() {
        let e = set_level("loud").unwrap_err();
        assert!(e.contains("unknown log level \"loud\"") && e.contains("debug"), "{e}");
        assert!(LEVELS.iter().all(|l| *l == "default" || l.parse::<LevelFilter>().is_ok()));
    }
}
