use super::*;

const MINIMAL: &str = "[ssl]\nkey=node.key\ncert=node.crt\nca=/etc/invpn/ca.crt\n";

fn load_text(text: &str) -> Result<Config, ConfigError> {
    from_str(Path::new("/etc/invpn/invpn.conf"), text)
}

fn err(text: &str) -> String {
    load_text(text).unwrap_err().to_string()
}

#[test]
fn paths_beside_a_file_named_without_a_directory() {
    let c = from_str(Path::new("invpn.conf"), MINIMAL).unwrap();
    assert_eq!(c.ssl.key, PathBuf::from("./node.key"));
    assert_eq!(c.ssl.ca, PathBuf::from("/etc/invpn/ca.crt"));
}

#[test]
fn defaults() {
    let c = load_text(MINIMAL).unwrap();
    assert_eq!(c.ssl.key, PathBuf::from("/etc/invpn/node.key"), "relative to the file");
    assert_eq!(c.ssl.ca, PathBuf::from("/etc/invpn/ca.crt"));
    assert_eq!(c.network.port, 41744);
    assert_eq!(c.network.bind, None);
    assert_eq!(c.control.metrics, None, "no metrics listener unless asked");
    assert_eq!(c.network.max_links, crate::core::mesh::DEFAULT_MAX_LINKS);
    assert_eq!(c.network.announce_interval, Duration::from_secs(5));
    assert!(c.network.listening());
    assert_eq!(c.interface.name, "invpn%d");
    assert_eq!(c.interface.mtu, 1500);
    assert_eq!(c.control.socket, PathBuf::from("/run/invpnd.sock"));
    assert_eq!(c.performance.workers, 0);
    assert_eq!(c.network.congestion, Congestion::Default);
    assert!(c.warnings.is_empty());
}

#[test]
fn each_instance_has_its_own_socket_and_cache_by_default() {
    let at = |p: &str| from_str(Path::new(p), MINIMAL).unwrap();
    let c = at("/etc/invpn/invpn.conf");
    assert_eq!(c.control.socket, PathBuf::from("/run/invpnd.sock"));
    assert_eq!(c.network.cache, PathBuf::from("/var/lib/invpnd/invpn.cache"));
    // invpnd@office.service: /etc/invpn/office.conf
    let c = at("/etc/invpn/office.conf");
    assert_eq!(c.control.socket, PathBuf::from("/run/invpnd.office.sock"));
    assert_eq!(c.network.cache, PathBuf::from("/var/lib/invpnd/office.cache"));
    let c = at("lab");
    assert_eq!(c.control.socket, PathBuf::from("/run/invpnd.lab.sock"));
    assert_eq!(c.network.cache, PathBuf::from("/var/lib/invpnd/lab.cache"));
    assert_eq!(instance_name(Path::new("/x/.conf")), ".conf");
    // set ones stay as set
    let c = from_str(
        Path::new("/etc/invpn/office.conf"),
        &format!("{MINIMAL}[network]\ncache=c\n[control]\nsocket=/run/s.sock\n"),
    )
    .unwrap();
    assert_eq!(c.network.cache, PathBuf::from("/etc/invpn/c"));
    assert_eq!(c.control.socket, PathBuf::from("/run/s.sock"));
}

#[test]
fn invpn04_install_example_is_accepted() {
    let c = load_text(
        "[ssl]\nkey=/etc/invpn/invpn.key\ncert=/etc/invpn/invpn.crt\nca=/etc/invpn/invpn_ca.crt\n\
         [network]\nport=47741\ncache=/etc/invpn/invpn.cache\n\
         init=02:50:56:00:00:01@192.168.0.1:47441\n",
    )
    .unwrap();
    assert_eq!(c.network.port, 47741);
    assert_eq!(c.network.cache, PathBuf::from("/etc/invpn/invpn.cache"));
    assert_eq!(c.network.init.len(), 1);
    assert_eq!(c.network.init[0].addr.port(), 47441);
}

#[test]
fn everything_set() {
    let c = load_text(&format!(
        "{MINIMAL}[network]\nbind=[fd00::1]\ninit=02:50:56:00:00:01@198.18.0.1:1, 02:50:56:00:00:02@[fd00::2]:2\n\
         no_relay=yes\nmax_links=8\nannounce_interval=1s\nroute_ttl=30s\nmax_clock_skew=10s\n\
         [interface]\nname=mesh0\nmtu=9000\nup=/bin/true\n[control]\nsocket=/tmp/x.sock\n[performance]\nworkers=2\n"
    ))
    .unwrap();
    assert_eq!(c.network.bind, Some("fd00::1".parse().unwrap()));
    assert_eq!(c.network.init.len(), 2);
    assert!(c.network.no_relay && !c.network.listening());
    assert_eq!(c.network.max_links, 8);
    assert_eq!(c.interface.up, Some(PathBuf::from("/bin/true")));
    assert_eq!(c.interface.mtu, 9000);
    assert_eq!(c.performance.workers, 2);
}

#[test]
fn bad_values_name_file_line_and_key() {
    let cases = [
        ("[network]\nport=70000\n", ":6: [network] port:"),
        ("[network]\nport=0\n", ":6: [network] port:"),
        ("[network]\nbind=somewhere\n", ":6: [network] bind:"),
        ("[network]\ninit=02:50:56:00:00:01\n", ":6: [network] init:"),
        ("[network]\nno_incoming=perhaps\n", ":6: [network] no_incoming:"),
        ("[network]\nmax_links=-1\n", ":6: [network] max_links:"),
        ("[network]\nannounce_interval=0\n", ":6: [network] announce_interval:"),
        ("[interface]\nmtu=100\n", ":6: [interface] mtu:"),
        ("[interface]\nmtu=70000\n", ":6: [interface] mtu:"),
        ("[interface]\nname=a-very-long-interface-name\n", ":6: [interface] name:"),
        ("[performance]\nworkers=many\n", ":6: [performance] workers:"),
        ("[interface]\nup=missing.sh\n", ":6: [interface] up: /etc/invpn/missing.sh: No such file"),
        ("[interface]\nup=/etc/passwd\n", ":6: [interface] up: /etc/passwd is not an executable"),
        ("[network]\nport=1\nport=2\n", ":7: [network] port: given twice (first on line 6)"),
        ("[network]\ncongestion=\n", ":6: [network] congestion: \"\": expected `system` or"),
        ("[network]\ncongestion=a_sixteen_chars_\n", ":6: [network] congestion:"),
        ("[network]\ncongestion=bbr cubic\n", ":6: [network] congestion:"),
        ("[network]\ncongestion=../bbr\n", ":6: [network] congestion:"),
        ("[network]\ncongestion=2bbr\n", ":6: [network] congestion:"),
        ("[network\n", ":5: unclosed section"),
        ("[control]\nmetrics=9561\n", ":6: [control] metrics: \"9561\": expected ADDRESS:PORT"),
        ("[control]\nmetrics=127.0.0.1:0\n", ":6: [control] metrics: \"127.0.0.1:0\": the port"),
        ("[control]\nmetrics=::1:9561\n", ":6: [control] metrics:"),
    ];
    for (extra, want) in cases {
        let e = err(&format!("{MINIMAL}{extra}"));
        assert!(e.starts_with("/etc/invpn/invpn.conf"), "{e}");
        assert!(e.contains(want), "{extra:?}: got {e:?}, want {want:?}");
    }
}

#[test]
fn missing_required_keys() {
    assert_eq!(
        err("[ssl]\nkey=a\ncert=b\n"),
        "/etc/invpn/invpn.conf: [ssl] ca: missing (required)"
    );
    assert!(err("").contains("[ssl] key: missing"));
}

#[test]
fn unknown_keys_and_odd_values_warn() {
    let c =
        load_text(&format!("{MINIMAL}[network]\nprot=1\n[interface]\nmtu=1000\n[colour]\nx=1\n"))
            .unwrap();
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("invpn.conf:6: [network] prot: unknown key"));
    assert!(c.warnings[1].contains(":10: unknown section [colour]"));
    assert!(c.warnings[2].contains("IPv6"));
}

#[test]
fn unreadable_file() {
    let e = load(Path::new("/nonexistent/invpn.conf")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/invpn.conf: cannot read:"), "{e}");
}

#[test]
fn congestion_names() {
    for (v, want) in [
        ("bbr", Congestion::Named("bbr".into())),
        ("reno", Congestion::Named("reno".into())),
        ("cubic", Congestion::Named("cubic".into())),
        ("tcp_bbr3-test", Congestion::Named("tcp_bbr3-test".into())),
        ("fifteen_chars__", Congestion::Named("fifteen_chars__".into())),
        ("system", Congestion::System),
        ("\"system\"", Congestion::System),
    ] {
        let c = load_text(&format!("{MINIMAL}[network]\ncongestion = {v}\n")).unwrap();
        assert_eq!(c.network.congestion, want, "{v}");
        assert!(c.warnings.is_empty());
    }
}

#[test]
fn errors_found_later_name_the_line() {
    let c = load_text(&format!("{MINIMAL}[network]\nport=1\n\ncongestion=htcp\n")).unwrap();
    assert_eq!(
        c.error("network", "congestion", "refused".into()).to_string(),
        "/etc/invpn/invpn.conf:8: [network] congestion: refused"
    );
    assert_eq!(
        c.error("network", "bind", "x".into()).to_string(),
        "/etc/invpn/invpn.conf: [network] bind (default): x",
        "not set"
    );
}

#[test]
fn link_queue_settings() {
    let c = load_text(MINIMAL).unwrap();
    assert_eq!(c.performance.queue_target, Duration::from_millis(5));
    assert_eq!(c.performance.queue_interval, Duration::from_millis(100));
    assert!(c.performance.ecn);
    assert_eq!(c.performance.notsent_lowat, 128 * 1024);
    assert!(c.performance.inflight_cap);
    let c = load_text(&format!(
        "{MINIMAL}[performance]\nqueue_target=2ms\nqueue_interval=300ms\necn=no\nnotsent_lowat=32k\n\
         inflight_cap=no\n"
    ))
    .unwrap();
    assert!(!c.performance.inflight_cap);
    assert_eq!(c.performance.queue_target, Duration::from_millis(2));
    assert_eq!(c.performance.queue_interval, Duration::from_millis(300));
    assert!(!c.performance.ecn);
    assert_eq!(c.performance.notsent_lowat, 32 * 1024);
    for (bad, want) in [
        ("queue_target=0", "queue_target: \"0\" is out of range"),
        ("queue_interval=1h", "queue_interval: \"1h\" is out of range"),
        ("notsent_lowat=1k", "notsent_lowat: \"1k\" is out of range"),
        ("notsent_lowat=64q", "unknown unit"),
        ("notsent_lowat=99999999999", "out of range"),
        ("ecn=maybe", "not a boolean"),
    ] {
        let e = err(&format!("{MINIMAL}[performance]\n{bad}\n"));
        assert!(e.starts_with("/etc/invpn/invpn.conf:6: [performance]"), "{bad}: {e}");
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn direct_link_settings() {
    let c = load_text(MINIMAL).unwrap();
    assert_eq!(c.network.direct, 256 * 1024);
    assert_eq!(c.network.direct_idle, Duration::from_secs(60));
    assert!(c.network.near_links);
    let c = load_text(&format!("{MINIMAL}[network]\nnear_links=no\n")).unwrap();
    assert!(!c.network.near_links);
    let c = load_text(&format!("{MINIMAL}[network]\ndirect=1m\ndirect_idle=5m\n")).unwrap();
    assert_eq!(c.network.direct, 1 << 20);
    assert_eq!(c.network.direct_idle, Duration::from_secs(300));
    for off in ["off", "OFF", "0"] {
        let c = load_text(&format!("{MINIMAL}[network]\ndirect={off}\n")).unwrap();
        assert_eq!(c.network.direct, 0, "{off}");
    }
    for (bad, want) in [
        ("direct=fast", "expected bytes a second through a relay (e.g. 256k), or off"),
        ("direct=8g", "unknown unit"),
        ("direct_idle=0s", "direct_idle: \"0s\" is out of range"),
        ("near_links=sometimes", "not a boolean"),
    ] {
        let e = err(&format!("{MINIMAL}[network]\n{bad}\n"));
        assert!(e.starts_with("/etc/invpn/invpn.conf:6: [network]"), "{bad}: {e}");
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn sizes() {
    assert_eq!(parse_size("65536", 0, u32::MAX), Ok(65536));
    assert_eq!(parse_size(" 64K ", 0, u32::MAX), Ok(65536));
    assert_eq!(parse_size("1MiB", 0, u32::MAX), Ok(1 << 20));
    assert!(parse_size("", 0, 10).is_err());
    assert!(parse_size("-1", 0, 10).is_err());
    assert!(parse_size("5000000m", 0, u32::MAX).is_err());
}

/// 0.4's files were read by Qt's `QSettings` (IniFormat): they are read the
/// same way here.
#[test]
fn qt_ini_files_of_invpn04() {
    let c = from_bytes(
        Path::new("/etc/invpn/invpn.conf"),
        b"\xEF\xBB\xBF[ssl] ; the node's credentials\n\
          key=node.key ; written by openssl\n\
          cert = \"node;1.crt\" ; quoted: the ; is kept\n\
          ca=/etc/invpn/ca.crt\n\
          # r\xE9seau: a comment in Latin-1\n\
          ; \xFF\xFE\n\
          [network];port\n\
          port = 47741;the port\n",
    )
    .unwrap();
    assert_eq!(c.ssl.key, PathBuf::from("/etc/invpn/node.key"));
    assert_eq!(c.ssl.cert, PathBuf::from("/etc/invpn/node;1.crt"));
    assert_eq!(c.network.port, 47741);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn non_utf8_in_a_used_value_names_its_line() {
    let e = from_bytes(
        Path::new("/etc/invpn/invpn.conf"),
        b"[ssl]\nkey=n\xE9ud.key\ncert=node.crt\nca=ca.crt\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("/etc/invpn/invpn.conf:2: [ssl] key:"), "{e}");
    assert!(e.contains("not UTF-8"), "{e}");
    // in a key nobody reads, it is only a warning
    let bytes = [MINIMAL.as_bytes(), b"[network]\nnote=caf\xE9\n"].concat();
    let c = from_bytes(Path::new("/etc/invpn/invpn.conf"), &bytes).unwrap();
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn every_key_is_in_the_example_and_the_manual_with_its_default() {
    let example = include_str!("../../etc/invpn.conf");
    let manual = include_str!("../../man/invpn.conf.5");
    for k in KEYS {
        let (section, key) = (k.section, k.name);
        let body = example
            .split(&format!("\n[{section}]\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no [{section}] in etc/invpn.conf"));
        let body = body.split("\n[").next().unwrap_or("");
        let line = body
            .lines()
            .find(|l| l.starts_with(&format!("#{key} = ")) || l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("[{section}] {key} is not in etc/invpn.conf"));
        let entry = manual
            .lines()
            .find(|l| l.starts_with(&format!(".BI {key} \"")))
            .unwrap_or_else(|| panic!("[{section}] {key} is not in invpn.conf(5)"));
        if let Some(d) = k.default {
            // shown commented out, as the default, in the example
            assert_eq!(line, format!("#{key} = {d}"), "[{section}] {key} in etc/invpn.conf");
            assert!(
                entry.contains(&format!("default\\fP {d}\\fR")),
                "[{section}] {key}: invpn.conf(5) does not give the default {d}: {entry}"
            );
        }
    }
    // and no key is documented that the parser does not know
    let mut section = "";
    for l in manual.lines() {
        if let Some(s) = l.strip_prefix(".SS [").and_then(|s| s.strip_suffix(']')) {
            section = s;
        }
        if let Some(name) = l.strip_prefix(".BI ").and_then(|r| r.split(' ').next()) {
            if !section.is_empty() && name != "[" {
                assert!(key(section, name).is_some(), "invpn.conf(5) documents [{section}] {name}");
            }
        }
    }
}

#[test]
fn every_default_parses_and_means_what_the_code_assumes() {
    // MINIMAL sets none of them: every default was parsed
    let c = load_text(MINIMAL).unwrap();
    assert_eq!(c.network.port, DEFAULT_PORT);
    let dial = crate::core::dialer::Limits::DEFAULT;
    assert_eq!(
        (c.limits.dial_targets, c.limits.dial_targets_per_link),
        (dial.total, dial.per_link)
    );
    assert_eq!(c.performance.notsent_lowat, 128 * 1024);
    assert_eq!(c.limits.memory, 32 * 1024 * 1024);
    assert_eq!(c.performance.stripes, 3);
    assert_eq!(c.control.metrics, None);
    // each key once
    for (i, k) in KEYS.iter().enumerate() {
        assert!(
            KEYS[..i].iter().all(|p| (p.section, p.name) != (k.section, k.name)),
            "{} twice",
            k.label()
        );
    }
}

#[test]
fn the_manual_says_when_each_change_takes_effect() {
    let manual = include_str!("../../man/invpn.conf.5");
    let section = manual.split(".SH RELOADING").nth(1).expect("a RELOADING section");
    let section = section.split("\n.SH ").next().unwrap_or("");
    for (takes, heading) in [
        (Takes::Reload, "Applied by a reload:"),
        (Takes::RestartInPlace, "Applied by a restart in place:"),
        (Takes::FullRestart, "Applied only by a stop and a start:"),
    ] {
        let list = section
            .split(heading)
            .nth(1)
            .and_then(|s| s.split("\n.TP").next().or(Some(s)))
            .and_then(|s| s.split("\n.PP").next())
            .unwrap_or_else(|| panic!("no {heading:?} in RELOADING"));
        let listed: Vec<&str> = list
            .lines()
            .filter_map(|l| l.strip_prefix(".IR "))
            .flat_map(|l| l.split(' '))
            .map(|w| w.trim_matches(|c| c == '"' || c == ','))
            .filter(|w| !w.is_empty())
            .collect();
        let want: Vec<String> = KEYS
            .iter()
            .filter(|k| k.takes == takes)
            .map(|k| format!("{}.{}", k.section, k.name))
            .collect();
        assert_eq!(listed, want, "RELOADING, {heading}");
    }
}

#[test]
fn a_change_is_reported_by_when_it_takes_effect() {
    let old = load_text(MINIMAL).unwrap();
    let new = load_text(&format!(
        "{MINIMAL}[network]\nmax_links=7\nport=41745\n[daemon]\nuser=nobody\n[performance]\nstripes=3\n"
    ))
    .unwrap();
    assert_eq!(changed(&old, &new, Takes::Reload), vec!["[network] max_links"]);
    assert_eq!(changed(&old, &new, Takes::RestartInPlace), vec!["[network] port"]);
    // stripes set to its default changed nothing
    assert_eq!(changed(&old, &new, Takes::FullRestart), vec!["[daemon] user"]);
}

#[test]
fn limits_default_and_are_numbers() {
    let c = load_text(MINIMAL).unwrap();
    assert_eq!((c.limits.dial_targets, c.limits.dial_targets_per_link), (10_000, 2_500));
    let c = load_text(&format!("{MINIMAL}[limits]\ndial_targets=50\ndial_targets_per_link=0\n"))
        .unwrap();
    assert_eq!((c.limits.dial_targets, c.limits.dial_targets_per_link), (50, 0));
    let e = err(&format!("{MINIMAL}[limits]\ndial_targets_per_link=lots\n"));
    assert!(e.starts_with("/etc/invpn/invpn.conf:6: [limits] dial_targets_per_link:"), "{e}");
}
