//! invpnd: the invpn mesh VPN daemon.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use invpn::config::{self, Config};
use invpn::daemon::net::CongestionControl;
use invpn::daemon::{self, cache_file, Options};
use invpn::tls::{self, cert_info::unix_to_text, Material};

const USAGE: &str = "Usage: invpnd [-c FILE] [-t] [-v...] [--tunfd FD]

invpnd joins this host to an invpn mesh: a layer-2 VPN whose nodes link to
each other over mutually authenticated TLS and share one Ethernet segment.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mut opts = getopts::Options::new();
    opts.optopt(
        "c",
        "config",
        &format!("configuration file (default {})", config::DEFAULT_PATH),
        "FILE",
    );
    opts.optflag(
        "t",
        "check",
        "check the configuration, certificates and keys, print them, and exit",
    );
    opts.optflagmulti("v", "verbose", "more logging (-vv: even more); RUST_LOG overrides");
    opts.optopt("", "tunfd", "adopt an open TAP descriptor (used by restart in place)", "FD");
    opts.optopt("", "controlfd", "adopt the control socket (used by restart in place)", "FD");
    opts.optflag("V", "version", "print the version and exit");
    opts.optflag("h", "help", "print this help and exit");
    let m = match opts.parse(&args[1..]) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("invpnd: {e}\n{}", opts.short_usage("invpnd"));
            return ExitCode::from(1);
        }
    };
    if m.opt_present("h") {
        return output(|out| write!(out, "{}", opts.usage(USAGE)));
    }
    if m.opt_present("V") {
        return output(|out| writeln!(out, "invpnd {}", env!("CARGO_PKG_VERSION")));
    }
    if !m.free.is_empty() {
        eprintln!("invpnd: unexpected argument {:?}\n{}", m.free[0], opts.short_usage("invpnd"));
        return ExitCode::from(1);
    }
    // the descriptors a restart in place passes on
    let fd = |name: &str| match m.opt_str(name).map(|s| s.parse::<i32>()) {
        None => Ok(None),
        Some(Ok(fd)) if fd >= 0 => Ok(Some(fd)),
        Some(_) => Err(format!("invpnd: --{name} needs a file descriptor number")),
    };
    let (tunfd, controlfd) = match (fd("tunfd"), fd("controlfd")) {
        (Ok(t), Ok(c)) => (t, c),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let path = PathBuf::from(m.opt_str("c").unwrap_or_else(|| config::DEFAULT_PATH.to_string()));
    let check = m.opt_present("t");
    if !check {
        invpn::logging::init(m.opt_count("v"));
    }

    // In check mode everything goes to the terminal; running, to the log
    // (standard error, or the journal with its priorities), once.
    let fail = |e: &dyn std::fmt::Display| {
        if check {
            eprintln!("invpnd: {e}");
        } else {
            log::error!("{e}");
        }
        ExitCode::from(1)
    };
    let mut cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let material = match daemon::material(&cfg) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    if let Err(e) = cache_file::check_path(&cfg) {
        return fail(&e);
    }
    if let Err(e) = cache_file::check_directory(&cfg) {
        return fail(&e);
    }
    if let Err(e) = cache_file::check_writable(&cfg) {
        if check {
            return fail(&e);
        }
        cfg.warnings.push(format!("{e}; running without saving it"));
    }
    if let Some(w) = tls::key_permissions_warning(&cfg.ssl.key) {
        cfg.warnings.push(cfg.error("ssl", "key", w).to_string());
    }
    if cfg.network.init.iter().any(|s| s.mac == material.mac) {
        cfg.warnings.push(format!(
            "{}: [network] init names this node's own MAC {}; that seed is ignored",
            cfg.path.display(),
            material.mac
        ));
    }
    if check {
        // tried on a socket, as the daemon will (run as root for the answer
        // root gets: only it may load a module or use what is not allowed)
        let congestion = match daemon::congestion(&cfg) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        let privileges = match daemon::privileges::resolve(&cfg) {
            Ok(p) => p,
            Err(e) => return fail(&e),
        };
        if let Some(p) = &privileges {
            let problems = daemon::privileges::check_access(&cfg, p);
            if !problems.is_empty() && p.configured {
                return fail(&problems.join("\ninvpnd: "));
            }
            if !problems.is_empty() {
                // the default user: the daemon will stay root, and say why
                let mut cfg = cfg.clone();
                cfg.warnings.extend(problems);
                cfg.warnings.push(format!(
                    "the default user {} cannot do the above: invpnd will stay root \
                     (give it access, or set [daemon] user = root)",
                    p.user
                ));
                return output(|out| print_check(out, &cfg, &material, &congestion, None));
            }
        }
        return output(|out| print_check(out, &cfg, &material, &congestion, privileges.as_ref()));
    }
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(&args[0]));
    match daemon::run(cfg, material, Options { tunfd, controlfd, exe, args: args[1..].to_vec() }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Writes to standard output; a reader that went away (`invpnd -t | head`)
/// ends the output quietly, any other write error is reported.
fn output(f: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>) -> ExitCode {
    let mut out = io::stdout().lock();
    match f(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("invpnd: standard output: {e}");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

fn print_check(
    out: &mut impl Write,
    cfg: &Config,
    m: &Material,
    congestion: &CongestionControl,
    privileges: Option<&invpn::daemon::privileges::Privileges>,
) -> io::Result<()> {
    let now = invpn::daemon::clock::unix_ms() as i64 / 1000;
    let n = &cfg.network;
    writeln!(out, "configuration {}: OK", cfg.path.display())?;
    for w in &cfg.warnings {
        writeln!(out, "warning: {w}")?;
    }
    writeln!(out, "node MAC:        {}", m.mac)?;
    writeln!(
        out,
        "certificate:     {} ({}, key {}, issuer {}, valid until {}, {} days left)",
        cfg.ssl.cert.display(),
        m.cert.subject,
        m.cert.key_type,
        m.cert.issuer,
        unix_to_text(m.cert.not_after),
        m.cert.days_left(now)
    )?;
    writeln!(out, "key:             {}", cfg.ssl.key.display())?;
    for c in &m.cas {
        writeln!(
            out,
            "CA:              {} ({}, valid until {}, {} days left)",
            cfg.ssl.ca.display(),
            c.subject,
            unix_to_text(c.not_after),
            c.days_left(now)
        )?;
    }
    match &m.crls {
        None => writeln!(out, "revocation:      no CRL ([ssl] crl not set)")?,
        Some(c) => {
            writeln!(out, "revocation:      {}", c.summary(now))?;
            for w in c.warnings(now) {
                writeln!(out, "warning: {w}")?;
            }
        }
    }
    if n.listening() {
        let at = n.bind.map_or("every address".to_string(), |b| b.to_string());
        writeln!(out, "listen:          port {} on {at}", n.port)?;
    } else {
        writeln!(
            out,
            "listen:          no ({}; announced without an address, port {})",
            if n.no_relay { "no_relay" } else { "no_incoming" },
            n.port
        )?;
    }
    writeln!(out, "relay:           {}", if n.no_relay { "no" } else { "yes" })?;
    let seeds: Vec<String> = n.init.iter().map(|s| s.to_string()).collect();
    writeln!(
        out,
        "seeds:           {}",
        if seeds.is_empty() { "none".to_string() } else { seeds.join(", ") }
    )?;
    let cached = std::fs::metadata(&n.cache).is_ok();
    writeln!(
        out,
        "node cache:      {}{}",
        n.cache.display(),
        if cached {
            format!(" ({} nodes)", cache_file::load(&n.cache).len())
        } else {
            " (not created yet)".to_string()
        }
    )?;
    let dials = invpn::core::mesh::dial_links(n.max_links);
    writeln!(out, "max links:       {}, dialling until {dials}", n.max_links)?;
    writeln!(
        out,
        "dial targets:    {} learnt from announcements, {} per neighbour",
        cfg.limits.dial_targets, cfg.limits.dial_targets_per_link
    )?;
    writeln!(out, "TCP congestion:  {congestion}")?;
    writeln!(
        out,
        "timers:          announce every {:?}, routes expire after {:?}, max clock skew {:?}",
        n.announce_interval, n.route_ttl, n.max_clock_skew
    )?;
    writeln!(
        out,
        "limits:          {} routes, {} broadcasts/s per source",
        n.max_routes,
        if n.broadcast_rate == 0 { "unlimited".to_string() } else { n.broadcast_rate.to_string() }
    )?;
    writeln!(
        out,
        "routes:          {} per link ({} of them relayed); memory budget {} MiB, {} bytes per node",
        cfg.limits.routes_per_link,
        cfg.limits.routes_per_link.div_ceil(2),
        cfg.limits.memory / (1024 * 1024),
        invpn::core::routes::bytes_per_node()
    )?;
    let i = &cfg.interface;
    let program = |what: &str, p: &Option<PathBuf>| {
        p.as_ref().map_or(String::new(), |p| format!(", {what} program {}", p.display()))
    };
    writeln!(
        out,
        "interface:       {}, MTU {}{}{}",
        i.name,
        i.mtu,
        program("up", &i.up),
        program("down", &i.down)
    )?;
    match privileges {
        Some(p) => writeln!(
            out,
            "runs as:         user {} (uid {}), group {} (gid {}) after setup, keeping {}",
            p.user,
            p.uid,
            p.group,
            p.gid,
            p.keep_text()
        )?,
        None if cfg.daemon.user.is_some() => {
            writeln!(out, "runs as:         root ([daemon] user)")?
        }
        None => {
            let user = daemon::privileges::DEFAULT_USER;
            if invpn::sys::user_by_name(user).ok().flatten().is_some() {
                writeln!(out, "runs as:         root (user {user} cannot; see the warnings)")?
            } else {
                writeln!(
                    out,
                    "runs as:         root (no user {user} on this system; see [daemon] user)"
                )?
            }
        }
    }
    writeln!(out, "control socket:  {}", cfg.control.socket.display())?;
    match cfg.control.metrics {
        Some(a) => writeln!(out, "metrics:         http://{a}/metrics")?,
        None => writeln!(out, "metrics:         off")?,
    }
    writeln!(out, "workers:         {}", daemon::worker_count(cfg.performance.workers))?;
    writeln!(
        out,
        "offload:         {}",
        if cfg.performance.offload { "yes (TCP segmentation)" } else { "no" }
    )?;
    let p = &cfg.performance;
    writeln!(
        out,
        "link queues:     fq_codel, target {} ms, interval {} ms, ECN {}, unsent per socket {} KiB, in-flight cap {}",
        p.queue_target.as_secs_f64() * 1000.0,
        p.queue_interval.as_secs_f64() * 1000.0,
        if p.ecn { "marked" } else { "off (dropped)" },
        p.notsent_lowat / 1024,
        if p.inflight_cap { "on" } else { "off" }
    )?;
    if p.lanes {
        writeln!(
            out,
            "lanes:           yes (per invpnd link carrying frames: 2 for sparse flows, {} stripe{})",
            p.stripes,
            if p.stripes == 1 { "" } else { "s" }
        )?;
    } else {
        writeln!(out, "lanes:           no")?;
    }
    out.flush()
}
