//! Reading and writing the node cache file. Writes are atomic (a temporary
//! file in the same directory, flushed, then renamed over the old one), so
//! a crash never leaves a torn file; failures are warnings, never fatal.
//! A file that is not a cache is never replaced: `check_path` refuses it
//! at start (and in `invpnd -t`), `save` once more before each write.

use std::io::Write;
use std::path::Path;

use log::{info, warn};

use crate::config::{Config, ConfigError};
use crate::core::cache::NodeCache;

/// Removes temporary files a crash left behind (`.NAME.tmp.PID`); called
/// by the daemon at start, never by `invpnd -t`.
pub fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Loads the cache; a missing or unreadable file gives an empty cache and
/// (unless simply missing) a warning.
pub fn load(path: &Path) -> NodeCache {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            info!("node cache {} does not exist yet", path.display());
            return NodeCache::new();
        }
        Err(e) => {
            warn!("node cache {}: cannot read ({e}); starting without it", path.display());
            return NodeCache::new();
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let parsed = NodeCache::parse(&text);
    if let Some((line, why)) = parsed.skipped.first() {
        warn!(
            "node cache {}: {} bad line(s) skipped, first at line {line}: {why}",
            path.display(),
            parsed.skipped.len()
        );
    }
    info!("node cache {}: {} node(s)", path.display(), parsed.cache.len());
    parsed.cache
}

/// Writes the cache atomically, unless a file that is not a cache took
/// its place.
pub fn save(path: &Path, cache: &NodeCache) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|b| !looks_like_cache(&b)) {
        return Err(std::io::Error::other(
            "the file there is not a node cache (any more); not overwriting it",
        ));
    }
    let dir = directory(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(cache.to_text().as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // make the rename itself durable
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether an existing file's bytes are a node cache, in invpnd's format
/// (`MAC ADDR:PORT [SEEN]` lines, `#` comments) or 0.4's Qt INI one
/// (`[General]`, `MAC%3A...=ADDR, PORT`); an empty file is one too. This
/// keeps the daemon from replacing a file it did not write as a cache.
pub fn looks_like_cache(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    if text.starts_with(CACHE_HEADER) {
        return !text.contains('\0');
    }
    if text.contains('\0') {
        return false;
    }
    // 0.4's has one section, [General], and keys that are MACs with ':'
    // escaped as %3A (some mangled, such as `%3A%3A=, 0`: still a cache)
    let lines = || text.lines().map(str::trim).filter(|l| !l.is_empty());
    let general = |l: &str| l.eq_ignore_ascii_case("[general]");
    if lines().next().is_some_and(general) {
        return lines().filter(|l| !general(l)).all(|l| {
            l.starts_with(';')
                || l.split_once('=').is_some_and(|(k, _)| {
                    let k = k.trim().replace("%3A", ":").replace("%3a", ":");
                    !k.is_empty() && k.chars().all(|c| c == ':' || c.is_ascii_hexdigit())
                })
        });
    }
    // invpnd's without its header (written before it had one): every line
    // an entry
    !lines().any(|l| l.starts_with('[')) && NodeCache::parse(text).skipped.is_empty()
}

/// The first bytes of every cache file invpnd writes.
const CACHE_HEADER: &str = "# invpnd node cache";

/// Checks `[network] cache` before the daemon starts (and in `invpnd -t`):
/// it must not be the key, certificate, CA, CRL or configuration file, and an
/// existing file there must be a node cache. Errors name the `cache` line
/// of the configuration.
pub fn check_path(cfg: &Config) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let cache = &cfg.network.cache;
    let err = |msg: String| cfg.error("network", "cache", msg);
    match std::fs::metadata(cache) {
        Ok(m) => {
            let others = [
                (Some(&cfg.ssl.key), "the node's private key ([ssl] key)"),
                (Some(&cfg.ssl.cert), "the node's certificate ([ssl] cert)"),
                (Some(&cfg.ssl.ca), "the CA certificate ([ssl] ca)"),
                (cfg.ssl.crl.as_ref(), "the revocation list ([ssl] crl)"),
                (Some(&cfg.path), "this configuration file"),
            ];
            for (other, what) in others.iter().filter_map(|(p, w)| Some((p.as_ref()?, w))) {
                let same = std::fs::metadata(other)
                    .is_ok_and(|o| o.dev() == m.dev() && o.ino() == m.ino());
                if same {
                    return Err(err(format!(
                        "{} is {what}: invpnd would overwrite it with the node cache",
                        cache.display()
                    )));
                }
            }
            if !m.is_file() {
                return Err(err(format!("{} is not a regular file", cache.display())));
            }
            let bytes = std::fs::read(cache)
                .map_err(|e| err(format!("{}: cannot read: {e}", cache.display())))?;
            if !looks_like_cache(&bytes) {
                return Err(err(format!(
                    "{} exists and is not a node cache (neither invpnd's nor 0.4's): \
                     invpnd would overwrite it; name another file",
                    cache.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(format!("{}: {e}", cache.display()))),
    }
    Ok(())
}

/// Checks that the directory of `[network] cache` exists: an error for
/// `invpnd -t` and at start alike (a mistyped path, not a passing state).
pub fn check_directory(cfg: &Config) -> Result<(), ConfigError> {
    let err = |msg: String| cfg.error("network", "cache", msg);
    let dir = directory(&cfg.network.cache);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(err(format!("{} is not a directory", dir.display()))),
        Err(e) => Err(err(format!(
            "its directory {}: {e} (create it: invpnd keeps the cache there)",
            dir.display()
        ))),
    }
}

/// Checks that invpnd may create files in the directory of `[network]
/// cache`: an error for `invpnd -t`, a warning when the daemon starts (a
/// read-only or full disk is a state a node without its cache survives).
pub fn check_writable(cfg: &Config) -> Result<(), ConfigError> {
    let err = |msg: String| cfg.error("network", "cache", msg);
    let dir = directory(&cfg.network.cache);
    if !crate::sys::can_create_in(dir) {
        return Err(err(format!(
            "its directory {} is not writable by invpnd: the cache could not be saved",
            dir.display()
        )));
    }
    Ok(())
}

/// The directory a file goes in ("." for a bare name).
fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_cache_looks_like() {
        let mut c = NodeCache::new();
        c.learn(crate::core::Mac([2, 0x50, 0x56, 0, 0, 2]), "198.18.0.2:41744".parse().unwrap(), 5);
        assert!(looks_like_cache(c.to_text().as_bytes()));
        assert!(looks_like_cache(NodeCache::new().to_text().as_bytes()));
        assert!(looks_like_cache(b""));
        assert!(looks_like_cache(b"[General]\n02%3A50%3A56%3A00%3A00%3A02=198.18.0.2, 47742\n"));
        // 0.4's caches hold mangled keys too
        assert!(looks_like_cache(
            b"[General]\n02%3A50%3A56%3A00%3A00%3A02=198.18.0.2, 47742\n%3A%3A=, 0\n"
        ));
        assert!(!looks_like_cache(b"[General]\nkey=/etc/invpn/invpn.key\n"));
        assert!(!looks_like_cache(b"[General]\n02%3A50=1\n[ssl]\nkey=k\n"));
        assert!(looks_like_cache(b"02:50:56:00:00:02 198.18.0.2:41744 17\n"));
        assert!(looks_like_cache(b"02:50:56:00:00:03 [fd00::3]:41744 17\n"));
        assert!(!looks_like_cache(b"[ssl]\n"));
        assert!(!looks_like_cache(
            b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"
        ));
        assert!(!looks_like_cache(b"[ssl]\nkey=/etc/invpn/invpn.key\n"));
        assert!(!looks_like_cache(b"\x7fELF\x02\x01\x00"));
    }

    #[test]
    fn save_does_not_replace_what_is_not_a_cache() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("invpn.cache");
        std::fs::write(&p, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        assert!(save(&p, &NodeCache::new()).is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "-----BEGIN PRIVATE KEY-----\n");
        std::fs::remove_file(&p).unwrap();
        save(&p, &NodeCache::new()).unwrap();
        save(&p, &NodeCache::new()).unwrap();
    }
}
