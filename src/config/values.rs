//! Parsers for the value types of the configuration file.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Seed;
use crate::core::Mac;

/// `true/false`, `yes/no`, `on/off`, `1/0` (any case).
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean (true/false, yes/no, on/off, 1/0)")),
    }
}

/// A duration: a number with an optional unit `ms`, `s` (default), `m`, `h`,
/// within `[min, max]`.
pub fn parse_duration(v: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 =
        num.parse().map_err(|_| format!("{v:?} is not a duration (e.g. 5s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        u => return Err(format!("{v:?}: unknown unit {u:?} (use ms, s, m or h)")),
    };
    let d = Duration::try_from_secs_f64(n * scale).map_err(|_| format!("{v:?} is out of range"))?;
    if d < min || d > max {
        return Err(format!("{v:?} is out of range ({min:?} to {max:?})"));
    }
    Ok(d)
}

/// A size in bytes: a number with an optional unit `k`/`KiB` (1024) or
/// `m`/`MiB` (1024 * 1024), within `[min, max]`.
pub fn parse_size(v: &str, min: u32, max: u32) -> Result<u32, String> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{v:?} is not a size (e.g. 65536, 64k, 1MiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1024,
        "m" | "mib" | "mb" => 1024 * 1024,
        u => return Err(format!("{v:?}: unknown unit {u:?} (use k or m)")),
    };
    match n.checked_mul(scale).and_then(|b| u32::try_from(b).ok()) {
        Some(b) if (min..=max).contains(&b) => Ok(b),
        _ => Err(format!("{v:?} is out of range ({min} to {max} bytes)")),
    }
}

/// A listening address `ADDR:PORT` (IPv6 as `[ADDR]:PORT`), or `off`.
pub fn parse_listen(v: &str) -> Result<Option<SocketAddr>, String> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match v.parse::<SocketAddr>() {
        Ok(a) if a.port() > 0 => Ok(Some(a)),
        Ok(_) => Err(format!("{v:?}: the port must be 1 to 65535")),
        Err(_) => Err(format!(
            "{v:?}: expected ADDRESS:PORT (IPv6 as [ADDRESS]:PORT, e.g. 127.0.0.1:9561) or off"
        )),
    }
}

/// `MAC@ADDR:PORT` (IPv6 as `[ADDR]:PORT`); the port may be left out.
pub fn parse_seed(s: &str, default_port: u16) -> Result<Seed, String> {
    let bad = |why: &str| format!("{s:?}: {why} (expected MAC@ADDR:PORT, IPv6 as MAC@[ADDR]:PORT)");
    let (mac, addr) = s.split_once('@').ok_or_else(|| bad("no '@'"))?;
    let mac: Mac =
        mac.trim().parse().map_err(|e: crate::core::mac::MacParseError| bad(&e.to_string()))?;
    if !mac.is_node_address() {
        return Err(bad("a node's MAC must be unicast and not all zero"));
    }
    let addr = addr.trim();
    // 0.4 split `ADDR:PORT` at the last colon, brackets or not: an
    // unbracketed IPv6 address followed by a port means what it meant there.
    let unbracketed_v6 = addr.rsplit_once(':').and_then(|(ip, port)| {
        let ip = ip.parse::<std::net::Ipv6Addr>().ok()?;
        Some(SocketAddr::new(IpAddr::V6(ip), port.parse::<u16>().ok()?))
    });
    let sock = if let Ok(sa) = addr.parse::<SocketAddr>() {
        sa
    } else if let Some(sa) = unbracketed_v6.filter(|_| !addr.starts_with('[')) {
        sa
    } else if let Ok(ip) = addr.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        SocketAddr::new(ip, default_port)
    } else {
        return Err(bad("not an IP address with an optional port"));
    };
    if sock.port() == 0 {
        return Err(bad("port 0"));
    }
    Ok(Seed { mac, addr: sock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_addresses() {
        assert_eq!(parse_listen("127.0.0.1:9561"), Ok(Some("127.0.0.1:9561".parse().unwrap())));
        assert_eq!(parse_listen(" [::1]:9561 "), Ok(Some("[::1]:9561".parse().unwrap())));
        assert_eq!(parse_listen("0.0.0.0:80"), Ok(Some("0.0.0.0:80".parse().unwrap())));
        assert_eq!(parse_listen("Off"), Ok(None));
        for bad in ["", "localhost:9561", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000"] {
            assert!(parse_listen(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn booleans() {
        for t in ["true", "Yes", "ON", "1"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["false", "no", "Off", "0"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        assert!(parse_bool("maybe").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn durations() {
        let (lo, hi) = (Duration::from_millis(100), Duration::from_secs(3600));
        assert_eq!(parse_duration("5", lo, hi), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms", lo, hi), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s", lo, hi), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m", lo, hi), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10ms", lo, hi).is_err());
        assert!(parse_duration("2h", lo, hi).is_err());
        assert!(parse_duration("5 parsecs", lo, hi).is_err());
        assert!(parse_duration("", lo, hi).is_err());
        assert!(parse_duration("-1", lo, hi).is_err());
    }

    #[test]
    fn seeds() {
        let s = parse_seed("02:50:56:00:00:01@198.18.0.1:47741", 41744).unwrap();
        assert_eq!(s.to_string(), "02:50:56:00:00:01@198.18.0.1:47741");
        let s = parse_seed("02:50:56:00:00:01@[fd00::1]:5", 41744).unwrap();
        assert_eq!(s.addr, "[fd00::1]:5".parse().unwrap());
        let s = parse_seed("02:50:56:00:00:01@198.18.0.1", 41744).unwrap();
        assert_eq!(s.addr.port(), 41744);
        // as 0.4 read it: the part after the last colon is the port
        let s = parse_seed("02:50:56:00:00:01@fd00::1:47741", 41744).unwrap();
        assert_eq!(s.addr, "[fd00::1]:47741".parse().unwrap());
        let s = parse_seed("02:50:56:00:00:01@fd00::", 41744).unwrap();
        assert_eq!(s.addr, "[fd00::]:41744".parse().unwrap());
        for bad in [
            "198.18.0.1:1",
            "zz@198.18.0.1:1",
            "ff:ff:ff:ff:ff:ff@198.18.0.1:1",
            "02:50:56:00:00:01@host.example:1",
            "02:50:56:00:00:01@198.18.0.1:0",
            "02:50:56:00:00:01@198.18.0.1:99999",
        ] {
            assert!(parse_seed(bad, 41744).is_err(), "{bad} accepted");
        }
    }
}
