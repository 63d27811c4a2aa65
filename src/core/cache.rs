//! The node cache (PROTOCOL.md §7): addresses of nodes that accept
//! connections, kept across restarts so that one seed is enough once.
//!
//! This is the in-memory model and the file format; reading and writing
//! the file (atomically) is the daemon's job. invpnd writes one line per
//! node, `MAC ADDR:PORT LAST-SEEN`, and also reads 0.4's Qt INI cache
//! (`[General]`, `02%3A50%3A56%3A00%3A00%3A02=198.18.0.2, 47742`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::mac::Mac;

/// Entries not refreshed for this long are dropped (seconds): 30 days.
pub const MAX_AGE: u64 = 30 * 86_400;
/// Most entries kept; the oldest go first.
pub const MAX_ENTRIES: usize = 10_000;

/// One known node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheEntry {
    /// Where the node was reached.
    pub addr: SocketAddr,
    /// Unix seconds when the address was last announced (0: unknown, e.g.
    /// from a 0.4 cache).
    pub seen: u64,
}

/// The cache, with a dirty flag for coalesced writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NodeCache {
    entries: BTreeMap<Mac, CacheEntry>,
    dirty: bool,
}

/// What could not be read from a cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheParse {
    /// The entries read.
    pub cache: NodeCache,
    /// Lines skipped, with their numbers and why (the rest is kept).
    pub skipped: Vec<(usize, String)>,
}

impl NodeCache {
    /// An empty cache.
    pub fn new() -> NodeCache {
        NodeCache::default()
    }

    /// Records an announced address; returns whether the address is new.
    pub fn learn(&mut self, mac: Mac, addr: SocketAddr, now: u64) -> bool {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        match self.entries.get_mut(&mac) {
            Some(e) if e.addr == addr => {
                // Only the timestamp: written with the next change or flush.
                e.seen = now;
                false
            }
            found => {
                if found.is_none() && self.entries.len() >= MAX_ENTRIES {
                    // full: the entry heard from longest ago makes room
                    let oldest = self.entries.iter().min_by_key(|(_, e)| e.seen).map(|(m, _)| *m);
                    if let Some(m) = oldest {
                        self.entries.remove(&m);
                    }
                }
                self.entries.insert(mac, CacheEntry { addr, seen: now });
                self.dirty = true;
                true
            }
        }
    }

    /// Drops a node that announced it takes no connections.
    pub fn forget(&mut self, mac: &Mac) -> bool {
        let gone = self.entries.remove(mac).is_some();
        self.dirty |= gone;
        gone
    }

    /// Gives entries read without a date (0.4's cache has none) the date
    /// `now`, so that they age like the others.
    pub fn date_undated(&mut self, now: u64) {
        self.entries.values_mut().filter(|e| e.seen == 0).for_each(|e| e.seen = now);
    }

    /// Drops entries older than [`MAX_AGE`] and the oldest beyond
    /// [`MAX_ENTRIES`]; returns how many went.
    pub fn prune(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| now.saturating_sub(e.seen) <= MAX_AGE);
        if self.entries.len() > MAX_ENTRIES {
            let mut by_age: Vec<(u64, Mac)> =
                self.entries.iter().map(|(m, e)| (e.seen, *m)).collect();
            by_age.sort_unstable();
            let excess = self.entries.len() - MAX_ENTRIES;
            for (_, m) in by_age.into_iter().take(excess) {
                self.entries.remove(&m);
            }
        }
        let gone = before - self.entries.len();
        self.dirty |= gone > 0;
        gone
    }

    /// The entries, by MAC.
    pub fn entries(&self) -> impl Iterator<Item = (Mac, CacheEntry)> + '_ {
        self.entries.iter().map(|(m, e)| (*m, *e))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether something changed since the last [`NodeCache::mark_written`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Marks the cache as written.
    pub fn mark_written(&mut self) {
        self.dirty = false;
    }

    /// Marks the cache as needing a write (e.g. after timestamps moved).
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// The file text.
    pub fn to_text(&self) -> String {
        let mut s = String::from(
            "# invpnd node cache: MAC address:port last-seen (Unix seconds).\n\
             # Written by invpnd; safe to delete (the node then starts from its init seeds).\n",
        );
        for (m, e) in &self.entries {
            s.push_str(&format!("{m} {} {}\n", e.addr, e.seen));
        }
        s
    }

    /// Reads a cache file in invpnd's format or 0.4's. Bad lines are
    /// skipped and reported; nothing here is fatal.
    pub fn parse(text: &str) -> CacheParse {
        let qt = text.lines().any(|l| l.trim().eq_ignore_ascii_case("[general]"))
            || text.contains("%3A")
            || text.contains("%3a");
        let mut cache = NodeCache::new();
        let mut skipped = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') || l.starts_with('[') {
                continue;
            }
            let parsed = if qt { parse_qt_line(l) } else { parse_line(l) };
            match parsed {
                Ok((m, e)) => {
                    cache.entries.insert(m, e);
                }
                Err(why) => skipped.push((i + 1, why)),
            }
        }
        CacheParse { cache, skipped }
    }
}

fn parse_line(l: &str) -> Result<(Mac, CacheEntry), String> {
    let mut it = l.split_whitespace();
    let (Some(m), Some(a)) = (it.next(), it.next()) else {
        return Err(format!("expected `MAC ADDR:PORT [SEEN]`, found {l:?}"));
    };
    let mac: Mac = m.parse().map_err(|e: super::mac::MacParseError| e.to_string())?;
    let addr: SocketAddr = a.parse().map_err(|_| format!("{a:?} is not ADDR:PORT"))?;
    let seen = match it.next() {
        Some(s) => s.parse().map_err(|_| format!("{s:?} is not a time"))?,
        None => 0,
    };
    check(mac, addr)?;
    Ok((mac, CacheEntry { addr: SocketAddr::new(addr.ip().to_canonical(), addr.port()), seen }))
}

/// `02%3A50%3A56%3A00%3A00%3A02=198.18.0.2, 47742` (Qt escapes ':' as %3A;
/// its address may be `::ffff:a.b.c.d`).
fn parse_qt_line(l: &str) -> Result<(Mac, CacheEntry), String> {
    let (k, v) = l.split_once('=').ok_or_else(|| format!("expected key=value, found {l:?}"))?;
    let key = k.trim().replace("%3A", ":").replace("%3a", ":");
    let mac: Mac = key.parse().map_err(|e: super::mac::MacParseError| e.to_string())?;
    let v = v.trim().trim_matches('"');
    let (ip, port) =
        v.split_once(',').ok_or_else(|| format!("expected `address, port`, found {v:?}"))?;
    let ip: IpAddr =
        ip.trim().parse().map_err(|_| format!("{:?} is not an IP address", ip.trim()))?;
    let port: u16 = port.trim().parse().map_err(|_| format!("{:?} is not a port", port.trim()))?;
    let addr = SocketAddr::new(ip.to_canonical(), port);
    check(mac, addr)?;
    Ok((mac, CacheEntry { addr, seen: 0 }))
}

fn check(mac: Mac, addr: SocketAddr) -> Result<(), String> {
    if !mac.is_node_address() {
        return Err(format!("{mac} is not a node MAC"));
    }
    if addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(format!("{addr} cannot be dialled"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u8) -> Mac {
        Mac([2, 0x50, 0x56, 0, 0, n])
    }

    #[test]
    fn round_trip() {
        let mut c = NodeCache::new();
        assert!(c.learn(m(2), "198.18.0.2:41744".parse().unwrap(), 100));
        assert!(c.learn(m(3), "[fd00::3]:1".parse().unwrap(), 200));
        assert!(c.is_dirty());
        let p = NodeCache::parse(&c.to_text());
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        assert_eq!(p.cache.entries().collect::<Vec<_>>(), c.entries().collect::<Vec<_>>());
    }

    #[test]
    fn only_address_changes_make_it_dirty() {
        let mut c = NodeCache::new();
        c.learn(m(2), "198.18.0.2:41744".parse().unwrap(), 1);
        c.mark_written();
        assert!(!c.learn(m(2), "198.18.0.2:41744".parse().unwrap(), 2));
        assert!(!c.is_dirty());
        assert!(c.learn(m(2), "198.18.0.9:41744".parse().unwrap(), 3));
        assert!(c.is_dirty());
        c.mark_written();
        assert!(c.forget(&m(2)) && c.is_dirty() && c.is_empty());
    }

    #[test]
    fn reads_invpn04_cache() {
        let text = "[General]\n02%3A50%3A56%3A00%3A00%3A02=198.18.0.2, 47742\n\
                    02%3A50%3A56%3A00%3A00%3A03=\"::ffff:198.18.0.3, 41744\"\n\
                    %3A%3A=, 0\n";
        let p = NodeCache::parse(text);
        let e: Vec<_> = p.cache.entries().collect();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0], (m(2), CacheEntry { addr: "198.18.0.2:47742".parse().unwrap(), seen: 0 }));
        assert_eq!(e[1].1.addr, "198.18.0.3:41744".parse().unwrap());
        assert_eq!(p.skipped.len(), 1, "0.4 caches hold garbage keys: {:?}", p.skipped);
        let mut c = p.cache;
        c.date_undated(500);
        assert!(c.entries().all(|(_, e)| e.seen == 500));
        assert_eq!(c.prune(500 + MAX_AGE + 1), 2, "undated entries age too");
    }

    #[test]
    fn corrupt_lines_are_skipped_not_fatal() {
        let p = NodeCache::parse(
            "junk\n02:50:56:00:00:02 198.18.0.2:1 5\n\0\0\0\nff:ff:ff:ff:ff:ff 1.2.3.4:5\n",
        );
        assert_eq!(p.cache.len(), 1);
        assert_eq!(p.skipped.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 3, 4]);
    }

    #[test]
    fn prune_drops_old_and_excess() {
        let mut c = NodeCache::new();
        c.learn(m(1), "198.18.0.1:1".parse().unwrap(), 10);
        c.learn(m(2), "198.18.0.2:1".parse().unwrap(), MAX_AGE + 100);
        assert_eq!(c.prune(MAX_AGE + 100), 1);
        for i in 0..(MAX_ENTRIES as u32 + 5) {
            let mac = Mac([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            c.learn(mac, "198.18.0.1:1".parse().unwrap(), MAX_AGE + 200 + u64::from(i));
        }
        // never more than MAX_ENTRIES, even between prunes
        assert_eq!(c.len(), MAX_ENTRIES);
        assert!(c.entries().all(|(m, _)| m != m2()), "oldest went first");
        let first = Mac([2, 0, 0, 0, 0, 0]);
        assert!(c.entries().all(|(m, _)| m != first), "then the oldest learned");
        assert_eq!(c.prune(MAX_AGE + 200), 0);
        fn m2() -> Mac {
            Mac([2, 0x50, 0x56, 0, 0, 2])
        }
    }
}
