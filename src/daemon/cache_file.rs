//! Reading and writing the node cache file. Writes are atomic (a temporary
//! file in the same directory, flushed, then renamed over the old one), so
//! a crash never leaves a torn file; failures are warnings, never fatal.

use std::io::Write;
use std::path::Path;

use log::{info, warn};

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

/// Writes the cache atomically.
pub fn save(path: &Path, cache: &NodeCache) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
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
