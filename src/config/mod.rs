//! The configuration file (`invpn.conf`, INI): 0.4's keys kept, new ones
//! added, every value checked before anything touches the network.
//!
//! Errors name `file:line`, the key and what was expected; unknown keys are
//! warnings. Relative paths are taken relative to the file's directory.

mod ini;
mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::Mac;
pub use ini::Entry;
pub use values::{parse_bool, parse_duration, parse_listen, parse_seed, parse_size};

/// Where invpnd looks for its configuration by default.
pub const DEFAULT_PATH: &str = "/etc/invpn/invpn.conf";
/// The control socket of the default configuration (see [`default_socket`]).
pub const DEFAULT_SOCKET: &str = "/run/invpnd.sock";
/// Where node caches are kept by default (see [`default_cache`]).
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/invpnd";

/// The name of the instance a configuration file is for: its file name
/// without `.conf` (`/etc/invpn/office.conf` is instance `office`, as
/// `invpnd@office.service` runs it). Several daemons on one host then get
/// their own control socket and node cache by default.
pub fn instance_name(path: &Path) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    let name = path.file_name().unwrap_or_default().as_bytes();
    let stem = name.strip_suffix(b".conf").filter(|s| !s.is_empty()).unwrap_or(name);
    std::ffi::OsStr::from_bytes(stem).to_os_string()
}

/// `[control] socket` when not set: `/run/invpnd.sock` for a file named
/// `invpn.conf` (the default one), `/run/invpnd.NAME.sock` for `NAME.conf`.
pub fn default_socket(path: &Path) -> PathBuf {
    let name = instance_name(path);
    if name == "invpn" {
        return PathBuf::from(DEFAULT_SOCKET);
    }
    let mut file = std::ffi::OsString::from("invpnd.");
    file.push(name);
    file.push(".sock");
    Path::new("/run").join(file)
}

/// `[network] cache` when not set: `/var/lib/invpnd/NAME.cache` for a
/// file named `NAME.conf` (`invpn.cache` for the default `invpn.conf`).
pub fn default_cache(path: &Path) -> PathBuf {
    let mut file = instance_name(path);
    file.push(".cache");
    Path::new(DEFAULT_CACHE_DIR).join(file)
}

/// The port 0.4 listens on by default.
pub const DEFAULT_PORT: u16 = 41744;

/// A seed node: `MAC@ADDR:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    /// The seed node's MAC, checked against its certificate.
    pub mac: Mac,
    /// Where to dial it.
    pub addr: SocketAddr,
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.mac, self.addr)
    }
}

/// `[ssl]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssl {
    /// The node's private key (PEM: PKCS#1, PKCS#8 or SEC1).
    pub key: PathBuf,
    /// The node's certificate (PEM), optionally followed by intermediates.
    pub cert: PathBuf,
    /// The CA certificate(s) that define the network (PEM, one or more).
    pub ca: PathBuf,
    /// Certificate revocation lists of the CA (PEM, one or more, or DER),
    /// checked at every handshake and on reload.
    pub crl: Option<PathBuf>,
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The TCP port to listen on (and to announce).
    pub port: u16,
    /// Address to listen on; `None` = every address (IPv6 and IPv4).
    pub bind: Option<IpAddr>,
    /// The node cache file.
    pub cache: PathBuf,
    /// The seeds (`init`).
    pub init: Vec<Seed>,
    /// Take no connections (and announce no address).
    pub no_incoming: bool,
    /// Relay no other node's announcements.
    pub no_relay: bool,
    /// Most links the dialer keeps up.
    pub max_links: usize,
    /// How often this node announces itself.
    pub announce_interval: Duration,
    /// How long a route lives without a fresh announcement.
    pub route_ttl: Duration,
    /// How far ids may be from the mesh clock.
    pub max_clock_skew: Duration,
    /// Most nodes the route table holds (default: `[limits] memory`
    /// divided by what one node costs).
    pub max_routes: usize,
    /// Broadcasts per second accepted from one source (0: no limit).
    pub broadcast_rate: u32,
    /// The TCP congestion control of link sockets.
    pub congestion: Congestion,
    /// Bytes a second sent to one node through a relay that make this node
    /// dial it for a direct link (0, `off`: no direct links, and none
    /// taken from others outside `max_links`).
    pub direct: u64,
    /// How long a direct link may carry little before it is closed.
    pub direct_idle: Duration,
    /// Probe for nearer neighbours and keep links to the nearest found.
    pub near_links: bool,
}

/// `[network] congestion`: the congestion control of the outer TCP
/// connections. Only the name's syntax is checked here; whether the kernel
/// offers it is found out on a socket when the daemon starts (and by
/// `invpnd -t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Congestion {
    /// Not set: `bbr` where the kernel offers it, else the system's default.
    Default,
    /// `system`: the kernel's default (`net.ipv4.tcp_congestion_control`).
    System,
    /// An algorithm by its kernel name (`reno`, `cubic`, `bbr`, ...).
    Named(String),
}

impl Congestion {
    /// The longest name the kernel takes (TCP_CA_NAME_MAX is 16 with the NUL).
    pub const NAME_MAX: usize = 15;

    /// Parses the value of `[network] congestion`.
    pub fn parse(v: &str) -> Result<Congestion, String> {
        if v == "system" {
            return Ok(Congestion::System);
        }
        let name_like = v.starts_with(|c: char| c.is_ascii_alphabetic())
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_like || v.len() > Self::NAME_MAX {
            return Err(format!(
                "{v:?}: expected `system` or the name of a TCP congestion control \
                 (such as bbr, cubic or reno: a letter, then letters, digits, '_' or '-', \
                 at most {} characters)",
                Self::NAME_MAX
            ));
        }
        Ok(Congestion::Named(v.to_string()))
    }
}

impl Network {
    /// Whether the node accepts connections (`no_relay` implies `no_incoming`).
    pub fn listening(&self) -> bool {
        !self.no_incoming && !self.no_relay
    }
}

/// `[interface]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface name; `%d` is replaced by the kernel with the first free number.
    pub name: String,
    /// The MTU.
    pub mtu: u16,
    /// A program to run once the interface is up.
    pub up: Option<PathBuf>,
    /// A program to run just before the interface goes away.
    pub down: Option<PathBuf>,
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The control socket's path.
    pub socket: PathBuf,
    /// Where to serve the metrics over HTTP (`None`: nowhere).
    pub metrics: Option<SocketAddr>,
}

/// `[performance]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Performance {
    /// Worker threads for links; 0 = one per CPU.
    pub workers: usize,
    /// TCP segmentation and checksum offload on the TAP, with super-frames
    /// sent whole to invpnd neighbours.
    pub offload: bool,
    /// CoDel's target: the queueing delay each inner flow may keep on a
    /// link before its packets are dropped or marked.
    pub queue_target: Duration,
    /// CoDel's interval: how long the delay may stay above target before
    /// the first drop; about the longest round trip of the inner flows.
    pub queue_interval: Duration,
    /// Mark ECN-capable inner packets CE instead of dropping them.
    pub ecn: bool,
    /// Unsent bytes the kernel may hold per link socket (TCP_NOTSENT_LOWAT).
    pub notsent_lowat: u32,
    /// Hand each link's socket no more than about one bandwidth-delay
    /// product of its path (see core::inflight).
    pub inflight_cap: bool,
    /// Give each link to an invpnd neighbour lanes: more connections, two
    /// for the frames of sparse flows, the rest stripes (see core::lane).
    pub lanes: bool,
    /// Stripes per link: lanes that share the bulk flows with the link.
    pub stripes: usize,
}

/// `[limits]`: how much state one neighbour may make this node keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The memory budget of the state other nodes make this node keep
    /// (routes and de-duplication windows), in bytes.
    pub memory: u64,
    /// Most routes learnt through one link (default: half of
    /// `max_routes`).
    pub routes_per_link: usize,
    /// Most dial targets learnt from announcements (hearsay), in all.
    pub dial_targets: usize,
    /// Most of them charged to one neighbour.
    pub dial_targets_per_link: usize,
}

/// `[daemon]`: whom the daemon runs as once it is set up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Daemon {
    /// `user`: a user name or number; `None`: the user `invpn` if the
    /// system has one, else root (see invpnd(8), PRIVILEGES).
    pub user: Option<String>,
    /// `group`: a group name or number; `None`: the user's primary group.
    pub group: Option<String>,
}

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[ssl]`.
    pub ssl: Ssl,
    /// `[network]`.
    pub network: Network,
    /// `[interface]`.
    pub interface: Interface,
    /// `[control]`.
    pub control: Control,
    /// `[performance]`.
    pub performance: Performance,
    /// `[limits]`.
    pub limits: Limits,
    /// `[daemon]`.
    pub daemon: Daemon,
    /// Things worth telling the operator (unknown keys, odd values).
    pub warnings: Vec<String>,
    /// What the file said, line by line (for errors found later).
    pub entries: Vec<Entry>,
}

impl Config {
    /// An error about the value of `[section] key`, naming its line if the
    /// file set it (and "(default)" if it did not).
    pub fn error(&self, section: &str, key: &str, msg: String) -> ConfigError {
        let line = self.entries.iter().find(|e| e.section == section && e.key == key);
        ConfigError::Setting {
            path: self.path.clone(),
            line: line.map(|e| e.line),
            section: section.to_string(),
            key: key.to_string(),
            msg,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why not.
        err: std::io::Error,
    },
    /// A line is not INI.
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A value is wrong.
    Value {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The section.
        section: String,
        /// The key.
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// A key given twice.
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The line of the second one.
        line: usize,
        /// The section.
        section: String,
        /// The key.
        key: String,
        /// The line of the first one.
        first: usize,
    },
    /// A required key is absent.
    Missing {
        /// The file.
        path: PathBuf,
        /// The section.
        section: &'static str,
        /// The key.
        key: &'static str,
    },
    /// A setting that reads well but cannot work (found after parsing, by
    /// looking at the files it names); `line` is `None` for a default.
    Setting {
        /// The file.
        path: PathBuf,
        /// The line, `None` for a default.
        line: Option<usize>,
        /// The section.
        section: String,
        /// The key.
        key: String,
        /// What is wrong.
        msg: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, err } => write!(f, "{}: cannot read: {err}", path.display()),
            ConfigError::Syntax { path, line, msg } => {
                write!(f, "{}:{line}: {msg}", path.display())
            }
            ConfigError::Value { path, line, section, key, msg } => {
                write!(f, "{}:{line}: [{section}] {key}: {msg}", path.display())
            }
            ConfigError::Duplicate { path, line, section, key, first } => write!(
                f,
                "{}:{line}: [{section}] {key}: given twice (first on line {first})",
                path.display()
            ),
            ConfigError::Missing { path, section, key } => {
                write!(f, "{}: [{section}] {key}: missing (required)", path.display())
            }
            ConfigError::Setting { path, line: Some(line), section, key, msg } => {
                write!(f, "{}:{line}: [{section}] {key}: {msg}", path.display())
            }
            ConfigError::Setting { path, line: None, section, key, msg } => {
                write!(f, "{}: [{section}] {key} (default): {msg}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// When a changed setting takes effect in a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// A reload (SIGHUP, `invpnctl reload`) applies it.
    Reload,
    /// A restart in place (SIGUSR2, `invpnctl restart`) applies it; a
    /// reload names it in a warning.
    RestartInPlace,
    /// Only a stop and a start apply it (it belongs to the interface, or
    /// to the process's user, which a restart in place keeps).
    FullRestart,
}

/// A configuration key: where it is, its default, when a change to it
/// takes effect. [`KEYS`] is the one list of them: the parser knows these
/// keys and no others, takes their defaults from it, and the reload
/// report and the tests of the manual and the example file read it.
pub struct Key {
    /// Its section, without brackets.
    pub section: &'static str,
    /// Its name.
    pub name: &'static str,
    /// Its default as a value the parser takes (and the manual and the
    /// example show); `None` for keys without one, or whose default
    /// depends on the file's name or another key (the manual says how).
    pub default: Option<&'static str>,
    /// When a change takes effect.
    pub takes: Takes,
    /// Its effective value in a configuration, to tell what changed.
    value: fn(&Config) -> String,
}

impl Key {
    /// `[section] name`, as messages name it.
    pub fn label(&self) -> String {
        format!("[{}] {}", self.section, self.name)
    }

    /// Whether its effective value differs between two configurations.
    pub fn changed(&self, old: &Config, new: &Config) -> bool {
        (self.value)(old) != (self.value)(new)
    }
}

macro_rules! key {
    ($section:literal, $name:literal, $default:expr, $takes:ident, |$c:ident| $value:expr) => {
        Key {
            section: $section,
            name: $name,
            default: $default,
            takes: Takes::$takes,
            value: |$c: &Config| format!("{:?}", $value),
        }
    };
}

/// Every key, by section, in the order of invpn.conf(5).
pub const KEYS: &[Key] = &[
    key!("ssl", "key", None, Reload, |c| c.ssl.key),
    key!("ssl", "cert", None, Reload, |c| c.ssl.cert),
    key!("ssl", "ca", None, Reload, |c| c.ssl.ca),
    key!("ssl", "crl", None, Reload, |c| c.ssl.crl),
    key!("network", "port", Some("41744"), RestartInPlace, |c| c.network.port),
    key!("network", "bind", None, RestartInPlace, |c| c.network.bind),
    key!("network", "cache", None, RestartInPlace, |c| c.network.cache),
    key!("network", "init", None, Reload, |c| c.network.init),
    key!("network", "no_incoming", Some("false"), RestartInPlace, |c| c.network.no_incoming),
    key!("network", "no_relay", Some("false"), RestartInPlace, |c| c.network.no_relay),
    key!("network", "max_links", Some("16"), Reload, |c| c.network.max_links),
    key!("network", "announce_interval", Some("5s"), RestartInPlace, |c| {
        c.network.announce_interval
    }),
    key!("network", "route_ttl", Some("60s"), RestartInPlace, |c| c.network.route_ttl),
    key!("network", "max_clock_skew", Some("60s"), RestartInPlace, |c| c.network.max_clock_skew),
    key!("network", "max_routes", None, RestartInPlace, |c| c.network.max_routes),
    key!("network", "broadcast_rate", Some("1000"), RestartInPlace, |c| {
        c.network.broadcast_rate
    }),
    key!("network", "congestion", None, Reload, |c| c.network.congestion),
    key!("network", "direct", Some("256k"), RestartInPlace, |c| c.network.direct),
    key!("network", "direct_idle", Some("60s"), RestartInPlace, |c| c.network.direct_idle),
    key!("network", "near_links", Some("yes"), RestartInPlace, |c| c.network.near_links),
    key!("interface", "name", Some("invpn%d"), FullRestart, |c| c.interface.name),
    key!("interface", "mtu", Some("1500"), RestartInPlace, |c| c.interface.mtu),
    key!("interface", "up", None, FullRestart, |c| c.interface.up),
    // run by the process that lets the interface go: the new one
    key!("interface", "down", None, RestartInPlace, |c| c.interface.down),
    key!("control", "socket", None, RestartInPlace, |c| c.control.socket),
    key!("control", "metrics", Some("off"), Reload, |c| c.control.metrics),
    key!("performance", "workers", Some("auto"), RestartInPlace, |c| c.performance.workers),
    key!("performance", "offload", Some("yes"), FullRestart, |c| c.performance.offload),
    key!("performance", "queue_target", Some("5ms"), RestartInPlace, |c| {
        c.performance.queue_target
    }),
    key!("performance", "queue_interval", Some("100ms"), RestartInPlace, |c| {
        c.performance.queue_interval
    }),
    key!("performance", "ecn", Some("yes"), RestartInPlace, |c| c.performance.ecn),
    key!("performance", "notsent_lowat", Some("128k"), RestartInPlace, |c| {
        c.performance.notsent_lowat
    }),
    key!("performance", "inflight_cap", Some("yes"), RestartInPlace, |c| {
        c.performance.inflight_cap
    }),
    key!("performance", "lanes", Some("yes"), RestartInPlace, |c| c.performance.lanes),
    key!("performance", "stripes", Some("3"), RestartInPlace, |c| c.performance.stripes),
    key!("limits", "memory", Some("32MiB"), RestartInPlace, |c| c.limits.memory),
    key!("limits", "routes_per_link", None, RestartInPlace, |c| c.limits.routes_per_link),
    key!("limits", "dial_targets", Some("10000"), Reload, |c| c.limits.dial_targets),
    key!("limits", "dial_targets_per_link", Some("2500"), Reload, |c| {
        c.limits.dial_targets_per_link
    }),
    key!("daemon", "user", None, FullRestart, |c| c.daemon.user),
    key!("daemon", "group", None, FullRestart, |c| c.daemon.group),
];

/// The key `[section] name`, if there is one.
pub fn key(section: &str, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.section == section && k.name == name)
}

/// The settings whose effective value differs between two configurations
/// and that take effect as `takes` says, as `[section] name`.
pub fn changed(old: &Config, new: &Config, takes: Takes) -> Vec<String> {
    KEYS.iter().filter(|k| k.takes == takes && k.changed(old, new)).map(Key::label).collect()
}

/// Reads and validates a configuration file (as bytes: see `ini`).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes =
        std::fs::read(path).map_err(|err| ConfigError::Read { path: path.to_path_buf(), err })?;
    from_bytes(path, &bytes)
}

/// Validates configuration text as if read from `path`.
pub fn from_str(path: &Path, text: &str) -> Result<Config, ConfigError> {
    from_bytes(path, text.as_bytes())
}

/// Validates configuration bytes as if read from `path`.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    let entries = ini::parse(bytes).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e.line,
        msg: e.msg,
    })?;
    let mut r = Resolver { path, entries: &entries, warnings: Vec::new() };
    r.check_keys()?;
    let ssl = Ssl {
        key: r.required_path("ssl", "key")?,
        cert: r.required_path("ssl", "cert")?,
        ca: r.required_path("ssl", "ca")?,
        crl: r.optional_path("ssl", "crl")?,
    };
    let port = r.value("network", "port", |v| match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{v:?} is not a TCP port (1-65535)")),
    })?;
    // the memory budget decides the default table size
    let memory =
        r.value("limits", "memory", |v| parse_size(v, 1024 * 1024, u32::MAX).map(u64::from))?;
    let max_routes = (memory as usize / crate::core::routes::bytes_per_node()).max(16);
    let network = Network {
        port,
        bind: r.get("network", "bind", None, |v| {
            let v = v.trim_start_matches('[').trim_end_matches(']');
            v.parse::<IpAddr>()
                .map(Some)
                .map_err(|_| format!("{v:?} is not an IPv4 or IPv6 address"))
        })?,
        cache: r.path_or("network", "cache", default_cache(path))?,
        init: r.get("network", "init", Vec::new(), |v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| parse_seed(s, DEFAULT_PORT))
                .collect()
        })?,
        no_incoming: r.value("network", "no_incoming", parse_bool)?,
        no_relay: r.value("network", "no_relay", parse_bool)?,
        max_links: r.value("network", "max_links", |v| {
            v.parse::<usize>().map_err(|_| format!("{v:?} is not a number of links"))
        })?,
        announce_interval: r.value("network", "announce_interval", |v| {
            parse_duration(v, Duration::from_millis(100), Duration::from_secs(3600))
        })?,
        route_ttl: r.value("network", "route_ttl", |v| {
            parse_duration(v, Duration::from_secs(1), Duration::from_secs(86_400))
        })?,
        max_clock_skew: r.value("network", "max_clock_skew", |v| {
            parse_duration(v, Duration::from_secs(0), Duration::from_secs(86_400 * 365))
        })?,
        max_routes: r.get("network", "max_routes", max_routes, |v| match v.parse::<usize>() {
            Ok(n) if n >= 16 => Ok(n),
            _ => Err(format!("{v:?}: expected a number of routes, at least 16")),
        })?,
        broadcast_rate: r.value("network", "broadcast_rate", |v| {
            v.parse::<u32>()
                .map_err(|_| format!("{v:?}: expected broadcasts per second (0: no limit)"))
        })?,
        congestion: r.get("network", "congestion", Congestion::Default, Congestion::parse)?,
        direct: r.value("network", "direct", |v| {
            if v.trim().eq_ignore_ascii_case("off") {
                return Ok(0);
            }
            parse_size(v, 0, u32::MAX).map(u64::from).map_err(|e| {
                format!("{e}: expected bytes a second through a relay (e.g. 256k), or off")
            })
        })?,
        direct_idle: r.value("network", "direct_idle", |v| {
            parse_duration(v, Duration::from_secs(1), Duration::from_secs(86_400))
        })?,
        near_links: r.value("network", "near_links", parse_bool)?,
    };
    if network.route_ttl < network.announce_interval * 2 {
        r.warnings.push(format!(
            "{}: [network] route_ttl ({:?}) is less than two announce intervals: routes will flap",
            path.display(),
            network.route_ttl
        ));
    }
    let interface = Interface {
        name: r.value("interface", "name", |v| {
            if v.is_empty() || v.len() > 15 {
                return Err(format!("{v:?}: an interface name has 1 to 15 characters"));
            }
            if v.contains(|c: char| c == '/' || c.is_whitespace() || c == ':') {
                return Err(format!("{v:?}: no '/', ':' or spaces in an interface name"));
            }
            Ok(v.to_string())
        })?,
        mtu: r.value("interface", "mtu", |v| match v.parse::<u16>() {
            Ok(m) if (576..=65000).contains(&m) => Ok(m),
            _ => Err(format!("{v:?} is not an MTU between 576 and 65000")),
        })?,
        up: r.program("interface", "up")?,
        down: r.program("interface", "down")?,
    };
    if network.max_links == 0 {
        r.warnings.push(format!(
            "{}: [network] max_links is 0: this node dials nobody and waits for others",
            path.display()
        ));
    }
    if interface.mtu < 1280 {
        r.warnings.push(format!(
            "{}: [interface] mtu {} is below 1280: IPv6 will not work over the mesh",
            path.display(),
            interface.mtu
        ));
    }
    let control = Control {
        socket: r.path_or("control", "socket", default_socket(path))?,
        metrics: r.value("control", "metrics", parse_listen)?,
    };
    let performance = Performance {
        offload: r.value("performance", "offload", parse_bool)?,
        queue_target: r.value("performance", "queue_target", |v| {
            parse_duration(v, Duration::from_micros(500), Duration::from_secs(1))
        })?,
        queue_interval: r.value("performance", "queue_interval", |v| {
            parse_duration(v, Duration::from_millis(5), Duration::from_secs(10))
        })?,
        ecn: r.value("performance", "ecn", parse_bool)?,
        notsent_lowat: r
            .value("performance", "notsent_lowat", |v| parse_size(v, 4 * 1024, 16 * 1024 * 1024))?,
        inflight_cap: r.value("performance", "inflight_cap", parse_bool)?,
        lanes: r.value("performance", "lanes", parse_bool)?,
        stripes: r.value("performance", "stripes", |v| match v.parse::<usize>() {
            Ok(n) if n <= crate::core::lane::MAX_STRIPES => Ok(n),
            _ => Err(format!(
                "{v:?}: expected a number of stripes from 0 to {}",
                crate::core::lane::MAX_STRIPES
            )),
        })?,
        workers: r.value("performance", "workers", |v| {
            if v == "auto" {
                return Ok(0);
            }
            match v.parse::<usize>() {
                Ok(n) if n <= crate::core::LinkId::MAX_WORKERS => Ok(n),
                _ => Err(format!(
                    "{v:?}: expected `auto`, 0 (one per CPU) or a number of threads up to 256"
                )),
            }
        })?,
    };
    let count = |what: &'static str| {
        move |v: &str| v.parse::<usize>().map_err(|_| format!("{v:?}: expected a number of {what}"))
    };
    let limits = Limits {
        memory,
        routes_per_link: r.get(
            "limits",
            "routes_per_link",
            (network.max_routes / 2).max(16),
            |v| match v.parse::<usize>() {
                Ok(n) if n >= 16 => Ok(n),
                _ => Err(format!("{v:?}: expected a number of routes, at least 16")),
            },
        )?,
        dial_targets: r.value("limits", "dial_targets", count("dial targets"))?,
        dial_targets_per_link: r.value("limits", "dial_targets_per_link", count("dial targets"))?,
    };
    let name = |what: &'static str| {
        move |v: &str| {
            let v = v.trim();
            let ok = !v.is_empty()
                && v.len() <= 32
                && v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !v.starts_with('-');
            if ok {
                Ok(Some(v.to_string()))
            } else {
                Err(format!("{v:?} is not a {what} name or number"))
            }
        }
    };
    let daemon = Daemon {
        user: r.get("daemon", "user", None, name("user"))?,
        group: r.get("daemon", "group", None, name("group"))?,
    };
    Ok(Config {
        path: path.to_path_buf(),
        ssl,
        network,
        interface,
        control,
        performance,
        limits,
        daemon,
        warnings: r.warnings,
        entries,
    })
}

struct Resolver<'a> {
    path: &'a Path,
    entries: &'a [Entry],
    warnings: Vec<String>,
}

impl Resolver<'_> {
    fn check_keys(&mut self) -> Result<(), ConfigError> {
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(first) =
                self.entries[..i].iter().find(|p| p.section == e.section && p.key == e.key)
            {
                return Err(ConfigError::Duplicate {
                    path: self.path.to_path_buf(),
                    line: e.line,
                    section: e.section.clone(),
                    key: e.key.clone(),
                    first: first.line,
                });
            }
            if !KEYS.iter().any(|k| k.section == e.section) {
                self.warnings.push(format!(
                    "{}:{}: unknown section [{}] (key {} ignored)",
                    self.path.display(),
                    e.line,
                    e.section,
                    e.key
                ));
            } else if key(&e.section, &e.key).is_none() {
                self.warnings.push(format!(
                    "{}:{}: [{}] {}: unknown key, ignored",
                    self.path.display(),
                    e.line,
                    e.section,
                    e.key
                ));
            }
        }
        Ok(())
    }

    fn entry(&self, section: &str, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.section == section && e.key == key)
    }

    fn get<T>(
        &self,
        section: &str,
        key: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.entry(section, key) {
            None => Ok(default),
            Some(e) => self.parse_entry(e, parse),
        }
    }

    /// The value of the entry `e`, as `parse` takes it.
    fn parse_entry<T>(
        &self,
        e: &Entry,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match &e.value {
            Ok(v) => parse(v),
            Err(v) => Err(format!("{v:?} is not UTF-8 text")),
        }
        .map_err(|msg| ConfigError::Value {
            path: self.path.to_path_buf(),
            line: e.line,
            section: e.section.clone(),
            key: e.key.clone(),
            msg,
        })
    }

    /// The value of a key whose default is in [`KEYS`]: from the file, or
    /// the default parsed alike (a default it refuses is an error naming
    /// the key and "(default)").
    fn value<T>(
        &self,
        section: &'static str,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        if let Some(e) = self.entry(section, name) {
            return self.parse_entry(e, parse);
        }
        let default = key(section, name).and_then(|k| k.default);
        default.ok_or_else(|| "no default".to_string()).and_then(parse).map_err(|msg| {
            ConfigError::Setting {
                path: self.path.to_path_buf(),
                line: None,
                section: section.to_string(),
                key: name.to_string(),
                msg,
            }
        })
    }

    fn resolve(&self, v: &str) -> Result<PathBuf, String> {
        if v.is_empty() {
            return Err("empty path".into());
        }
        let p = Path::new(v);
        Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            // "invpn.conf" has the parent "": its files are "./x", so that
            // the `up` program is not looked up in PATH
            let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
            dir.unwrap_or(Path::new(".")).join(p)
        })
    }

    /// An executable file (the `up` and `down` programs).
    fn program(&self, section: &str, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        self.get(section, key, None, |v| {
            let p = self.resolve(v)?;
            use std::os::unix::fs::PermissionsExt;
            match std::fs::metadata(&p) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(Some(p)),
                Ok(_) => Err(format!("{} is not an executable file", p.display())),
                Err(e) => Err(format!("{}: {e}", p.display())),
            }
        })
    }

    fn optional_path(&self, section: &str, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        self.get(section, key, None, |v| self.resolve(v).map(Some))
    }

    fn path_or(&self, section: &str, key: &str, default: PathBuf) -> Result<PathBuf, ConfigError> {
        self.get(section, key, default, |v| self.resolve(v))
    }

    fn required_path(
        &self,
        section: &'static str,
        key: &'static str,
    ) -> Result<PathBuf, ConfigError> {
        self.optional_path(section, key)?.ok_or(ConfigError::Missing {
            path: self.path.to_path_buf(),
            section,
            key,
        })
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
