//! The documentation against the programs.
//!
//! The man pages' examples with quoted output are run: every block between
//! `.\" {{ doc-test NAME` and `.\" }}` in man/*.5 and man/*.8 is a
//! transcript of commands (lines starting `$ ` or `# `, continued by a
//! trailing `\`) and of what they print. Each block runs in a scratch tree
//! prepared for NAME (see [`prepare`]): `/etc/invpn`, `/var/lib/invpnd` and
//! `/home/alice` (the home and working directory) in the commands are
//! directories of that tree, and the outputs read as if they were the real
//! ones. Dates, day counts, serial numbers and fingerprints are masked; a
//! line `...` stands for any number of lines, and a line ending in `...`
//! for any line that starts with what comes before it. A block that
//! differs fails the test with both texts; run it with
//! `INVPN_REGENERATE_DOCS=1` to write what the commands printed into the
//! man page instead (then put back any `...` worth keeping).
//!
//! Also: the two systemd units agree, and say what the daemon does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use invpn::pki::{self, Validity};

const MAN_PAGES: &[&str] = &["man/invpn.conf.5", "man/invpnd.8", "man/invpnctl.8"];

/// One command of a transcript and the lines it is quoted to print.
struct Step {
    /// The command's lines as written (prompt, continuations).
    lines: Vec<String>,
    /// The command, continuations joined, without its prompt.
    command: String,
    expected: Vec<String>,
}

/// A marked block: its name and where its lines are in the page.
struct Block {
    name: String,
    /// Line numbers (0-based) of the first and after the last line inside.
    start: usize,
    end: usize,
}

fn blocks(page: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    for (i, line) in page.lines().enumerate() {
        if let Some(name) = line.strip_prefix(".\\\" {{ doc-test ") {
            assert!(open.is_none(), "line {}: a doc-test block inside another", i + 1);
            open = Some((name.trim().to_string(), i + 1));
        } else if line.trim_end() == ".\\\" }}" {
            let (name, start) = open.take().unwrap_or_else(|| panic!("line {}: }} alone", i + 1));
            out.push(Block { name, start, end: i });
        }
    }
    assert!(open.is_none(), "a doc-test block is not closed");
    out
}

/// roff's escapes in the man pages' literal blocks, undone.
fn unroff(line: &str) -> String {
    line.replace("\\-", "-")
        .replace("\\(aq", "'")
        .replace("\\(dq", "\"")
        .replace("\\&", "")
        .replace("\\e", "\\")
}

/// Text as a literal line of a man page.
fn roff(line: &str) -> String {
    let s = line.replace('\\', "\\e").replace('-', "\\-").replace('\'', "\\(aq");
    if s.starts_with('.') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn transcript(lines: &[String]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut continued = false;
    for l in lines {
        if continued {
            let step = steps.last_mut().expect("a continuation follows a command");
            step.lines.push(l.clone());
            continued = l.ends_with('\\');
            step.command.push(' ');
            step.command.push_str(l.trim_end_matches('\\').trim());
        } else if let Some(cmd) = l.strip_prefix("$ ").or_else(|| l.strip_prefix("# ")) {
            continued = l.ends_with('\\');
            steps.push(Step {
                lines: vec![l.clone()],
                command: cmd.trim_end_matches('\\').trim().to_string(),
                expected: Vec::new(),
            });
        } else {
            steps.last_mut().expect("output follows a command").expected.push(l.clone());
        }
    }
    steps
}

/// Masks what changes from run to run: dates, day counts, serial numbers
/// and fingerprints (seven or more hex bytes with colons).
fn mask(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let digits =
        |at: usize, n: usize| b.len() >= at + n && b[at..at + n].iter().all(u8::is_ascii_digit);
    while i < b.len() {
        // 2026-11-25 20:49:51
        if digits(i, 4)
            && b.get(i + 4) == Some(&b'-')
            && digits(i + 5, 2)
            && b.get(i + 7) == Some(&b'-')
            && digits(i + 8, 2)
            && b.get(i + 10) == Some(&b' ')
            && digits(i + 11, 2)
            && b.get(i + 13) == Some(&b':')
            && digits(i + 14, 2)
            && b.get(i + 16) == Some(&b':')
            && digits(i + 17, 2)
        {
            out.push_str("<date>");
            i += 19;
            continue;
        }
        // 825 day(s)
        if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if line[j..].starts_with(" day(s)") {
                out.push_str("<n>");
                i = j;
                continue;
            }
        }
        // 7B:32:5F:D4:59:FE:7B:...
        let hex = |k: usize| b.len() >= k + 2 && b[k..k + 2].iter().all(u8::is_ascii_hexdigit);
        if hex(i) && (i == 0 || !b[i - 1].is_ascii_hexdigit()) {
            let mut j = i;
            let mut groups = 0;
            while hex(j) {
                groups += 1;
                j += 2;
                if b.get(j) == Some(&b':') && hex(j + 1) {
                    j += 1;
                } else {
                    break;
                }
            }
            if groups >= 7 {
                out.push_str("<hex>");
                // "7B:32:...:53:..." elides the rest of it
                i = if line[j..].starts_with(":...") { j + 1 } else { j };
                continue;
            }
        }
        let c = line[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Whether an actual line is the quoted one, where `...` in the quoted
/// line stands for any text (so `(CN=x, ...)` matches `(CN=x, key y)`).
fn line_matches(expected: &str, actual: &str) -> bool {
    let (e, a) = (mask(expected), mask(actual));
    let pieces: Vec<&str> = e.split("...").collect();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return e == a;
    }
    // a line ending in "...": what precedes, give or take its spaces
    let first = if pieces.len() == 2 && last.is_empty() { first.trim_end() } else { first };
    let Some(mut rest) = a.strip_prefix(first) else { return false };
    for p in &pieces[1..pieces.len() - 1] {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

fn lines_match(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e.trim() == "..." => {
            (0..=actual.len()).any(|k| lines_match(rest, &actual[k..]))
        }
        Some((e, rest)) => {
            actual.first().is_some_and(|a| line_matches(e, a)) && lines_match(rest, &actual[1..])
        }
    }
}

/// The scratch tree of a block: `root` stands for `/`.
struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for d in ["etc/invpn", "var/lib/invpnd", "home/alice"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        Scratch { _dir: dir, root }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home/alice")
    }

    fn etc(&self) -> PathBuf {
        self.root.join("etc/invpn")
    }

    /// A command of the page, its paths moved into the tree.
    fn inside(&self, command: &str) -> String {
        let r = self.root.display();
        command
            .replace("/etc/invpn", &format!("{r}/etc/invpn"))
            .replace("/var/lib/invpnd", &format!("{r}/var/lib/invpnd"))
    }

    /// Runs a command with sh, as in the page, and returns what it printed
    /// (standard output and error, in order), the tree's paths as in the
    /// page.
    fn run(&self, command: &str) -> Vec<String> {
        let bin = Path::new(env!("CARGO_BIN_EXE_invpnctl")).parent().unwrap().to_path_buf();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{{ {}\n}} 2>&1", self.inside(command)))
            .current_dir(self.home())
            .env("HOME", self.home())
            .env("PATH", path)
            .output()
            .unwrap();
        let text =
            String::from_utf8_lossy(&out.stdout).replace(&self.root.display().to_string(), "");
        text.lines().map(str::to_string).collect()
    }

    fn invpnctl(&self, args: &str) {
        let out = self.run(&format!("invpnctl {args} >/dev/null && echo ok"));
        assert_eq!(out, ["ok"], "invpnctl {args}");
    }
}

/// Makes the files that block `name` works on.
fn prepare(name: &str) -> Scratch {
    let s = Scratch::new();
    match name {
        // ca new and cert new, from nothing
        "ca-and-node" | "request" | "usage-errors" => {}
        "sign" => {
            s.invpnctl("ca new --dir invpn-ca --name 'Example invpn CA'");
            s.invpnctl("cert request --mac 02:50:56:00:00:01 --out invpn");
        }
        "verify" => {
            s.invpnctl("ca new --dir invpn-ca --name 'Example invpn CA'");
            s.invpnctl("cert new --ca-dir invpn-ca --mac 02:50:56:00:00:07 --out node1");
            let ca = pki::load_ca(&s.home().join("invpn-ca")).unwrap();
            let t = time::OffsetDateTime::now_utc();
            let old = Validity {
                not_before: t - time::Duration::days(400),
                not_after: t - time::Duration::days(10),
            };
            let old = pki::issue(&ca, "02:50:56:00:00:08", old, pki::KeyType::EcdsaP256).unwrap();
            std::fs::write(s.home().join("old.crt"), &old.cert_pem).unwrap();
            let show = s.run("invpnctl --json cert show old.crt");
            let v: serde_json::Value = serde_json::from_str(&show.join("\n")).unwrap();
            let serial = v["certificates"][0]["serial"].as_str().unwrap().to_string();
            let list = common::crl(&s.home().join("invpn-ca"), &[&serial]);
            std::fs::write(s.home().join("invpn-ca/ca.crl"), list.pem().unwrap()).unwrap();
        }
        // a legacy node: an RSA key and request from openssl, and the X.509
        // v1 certificate openssl (before 3.2) makes without -extfile
        "reissue-v1" => {
            s.invpnctl("ca new --dir invpn-ca --name 'invpn CA'");
            let home = s.home();
            std::fs::copy(home.join("invpn-ca/ca.crt"), home.join("invpn_ca.crt")).unwrap();
            std::fs::copy(home.join("invpn-ca/ca.key"), home.join("invpn_ca.key")).unwrap();
            for args in [
                "req -newkey rsa:2048 -nodes -keyout invpn.key -subj /CN=02:50:56:00:00:01 -out invpn.req",
                "x509 -req -in invpn.req -CA invpn_ca.crt -CAkey invpn_ca.key -CAcreateserial -days 30 -out invpn.crt",
            ] {
                common::openssl(&home, &args.split(' ').collect::<Vec<_>>());
            }
        }
        // a node's configuration, as INSTALL makes it for B
        "check" => {
            s.invpnctl("ca new --dir invpn-ca --name 'invpn CA'");
            s.invpnctl("cert new --ca-dir invpn-ca --mac 02:50:56:00:00:02 --out /etc/invpn/invpn");
            std::fs::copy(s.home().join("invpn-ca/ca.crt"), s.etc().join("invpn_ca.crt")).unwrap();
            std::fs::write(
                s.etc().join("invpn.conf"),
                s.inside(
                    "[ssl]\nkey = invpn.key\ncert = invpn.crt\nca = invpn_ca.crt\n\
                     [network]\ninit = 02:50:56:00:00:01@198.18.0.1\n\
                     cache = /var/lib/invpnd/invpn.cache\n",
                ),
            )
            .unwrap();
        }
        // invpnd(8)'s operator mistakes: each configuration has one
        "mistakes" => {
            s.invpnctl("ca new --dir invpn-ca --name 'invpn CA'");
            s.invpnctl("cert new --ca-dir invpn-ca --mac 02:50:56:00:00:02 --out /etc/invpn/invpn");
            let (home, etc) = (s.home(), s.etc());
            std::fs::copy(home.join("invpn-ca/ca.crt"), etc.join("invpn_ca.crt")).unwrap();
            let k = etc.join("invpn.key");
            let k = k.to_str().unwrap();
            let locked = etc.join("locked.key");
            let locked = locked.to_str().unwrap();
            common::openssl(
                &home,
                &["pkcs8", "-topk8", "-in", k, "-out", locked, "-passout", "pass:x"],
            );
            std::fs::write(home.join("server.cnf"), "[e]\nextendedKeyUsage=serverAuth\n").unwrap();
            common::openssl(
                &home,
                &["req", "-new", "-key", k, "-subj", "/CN=02:50:56:00:00:02", "-out", "s.req"],
            );
            let server = etc.join("server.crt");
            common::openssl(
                &home,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "s.req",
                    "-CA",
                    "invpn-ca/ca.crt",
                    "-CAkey",
                    "invpn-ca/ca.key",
                    "-CAcreateserial",
                    "-extfile",
                    "server.cnf",
                    "-extensions",
                    "e",
                    "-days",
                    "30",
                    "-out",
                    server.to_str().unwrap(),
                ],
            );
            let c = "/var/lib/invpnd/invpn.cache";
            for (name, key, cert, ca, cache) in [
                ("invpn", "invpn.key", "invpn.crt", "invpn_ca.crt", c),
                ("locked", "locked.key", "invpn.crt", "invpn_ca.crt", c),
                ("swapped", "invpn.key", "invpn.crt", "invpn.crt", c),
                ("server", "invpn.key", "server.crt", "invpn_ca.crt", c),
                ("cache", "invpn.key", "invpn.crt", "invpn_ca.crt", "invpn.key"),
            ] {
                std::fs::write(
                    etc.join(format!("{name}.conf")),
                    s.inside(&format!(
                        "[ssl]\nkey = {key}\ncert = {cert}\nca = {ca}\n[network]\ncache = {cache}\n"
                    )),
                )
                .unwrap();
            }
        }
        other => panic!("no doc-test named {other:?}: add it to prepare()"),
    }
    s
}

/// Runs a block; returns the transcript as it came out, and whether it
/// matches the page.
fn run_block(name: &str, lines: &[String]) -> (Vec<String>, bool) {
    let scratch = prepare(name);
    let mut actual_text = Vec::new();
    let mut ok = true;
    for step in transcript(lines) {
        let actual = scratch.run(&step.command);
        ok &= lines_match(&step.expected, &actual);
        actual_text.extend(step.lines.iter().cloned());
        actual_text.extend(actual);
    }
    (actual_text, ok)
}

#[test]
fn man_page_examples_print_what_they_quote() {
    let regenerate = std::env::var("INVPN_REGENERATE_DOCS").as_deref() == Ok("1");
    let mut failures = Vec::new();
    let mut count = 0;
    for page in MAN_PAGES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(page);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        // from the last block up, so that a rewrite keeps the others' places
        for b in blocks(&text).into_iter().rev() {
            count += 1;
            let quoted: Vec<String> = lines[b.start..b.end].iter().map(|l| unroff(l)).collect();
            let (actual, ok) = run_block(&b.name, &quoted);
            if ok {
                continue;
            }
            if regenerate {
                lines.splice(b.start..b.end, actual.iter().map(|l| roff(l)));
            } else {
                failures.push(format!(
                    "{page}:{}: doc-test {}: the page says\n{}\n-- but the commands print\n{}\n",
                    b.start + 1,
                    b.name,
                    quoted.join("\n"),
                    actual.join("\n")
                ));
            }
        }
        if regenerate {
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        }
    }
    assert!(count >= 5, "only {count} doc-test blocks found");
    assert!(
        failures.is_empty(),
        "{}(INVPN_REGENERATE_DOCS=1 cargo test --test docs writes them into the pages)",
        failures.join("\n")
    );
}

#[test]
fn the_matching_rules() {
    let v = |s: &[&str]| s.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(lines_match(&v(&["a", "...", "z"]), &v(&["a", "b", "c", "z"])));
    assert!(lines_match(&v(&["a", "..."]), &v(&["a"])));
    assert!(!lines_match(&v(&["a", "z"]), &v(&["a", "b", "z"])));
    assert!(lines_match(&v(&["key: RSA ..."]), &v(&["key: RSA 4096"])));
    assert!(!lines_match(&v(&["key: RSA ..."]), &v(&["key: Ed25519"])));
    assert!(lines_match(&v(&["(CN=x, ...)"]), &v(&["(CN=x, key y, z)"])));
    assert!(!lines_match(&v(&["(CN=x, ...)"]), &v(&["(CN=y, key y)"])));
    assert!(!lines_match(&v(&["a ... b ... c"]), &v(&["a b c b"])));
    assert!(lines_match(&v(&["a ... b ... c"]), &v(&["a x b y c"])));
    assert_eq!(
        mask("valid until 2029-02-27 21:49:51 UTC (825 day(s) left), 7B:32:5F:D4:59:FE:7B:53"),
        "valid until <date> UTC (<n> day(s) left), <hex>"
    );
    assert_eq!(mask("node 02:50:56:00:00:01"), "node 02:50:56:00:00:01");
    assert!(line_matches(
        "SHA-256: 7B:32:5F:D4:59:FE:7B:53:...",
        "SHA-256: 2A:C7:EB:6E:F2:28:61:B6:C9"
    ));
    assert_eq!(unroff(&roff("it's -v \\ .x")), "it's -v \\ .x");
    assert_eq!(roff(".x"), "\\&.x");
}

/// INSTALL's section 3.1 and 3.2, run in order in one scratch tree: what
/// it quotes invpnctl printing (wrapped, so compared with white space
/// collapsed) is what invpnctl prints.
#[test]
fn install_quotes_what_invpnctl_prints() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("INSTALL")).unwrap();
    let start = text.find("3.1 The CA").expect("INSTALL 3.1");
    let end = text.find("3.3 With openssl").expect("INSTALL 3.3");
    let scratch = Scratch::new();
    let mut block = Vec::new();
    let mut run = 0;
    let collapse =
        |lines: &[String]| lines.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    for line in text[start..end].lines().chain(std::iter::once("")) {
        if let Some(l) = line.strip_prefix("    ") {
            block.push(l.to_string());
            continue;
        }
        for step in transcript(&std::mem::take(&mut block)) {
            // the commands quoted with what they print
            if !step.command.starts_with("invpnctl ") || step.expected.is_empty() {
                continue;
            }
            run += 1;
            let actual = scratch.run(&step.command);
            let (want, got) = (collapse(&step.expected), collapse(&actual));
            assert!(
                line_matches(&want, &got),
                "INSTALL quotes `{}` printing\n{}\n-- but it prints\n{}",
                step.command,
                step.expected.join("\n"),
                actual.join("\n")
            );
        }
    }
    assert!(run >= 5, "only {run} invpnctl commands found in INSTALL 3.1-3.2");
}

/// The lines of a unit that are not comments.
fn settings(unit: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc").join(unit);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_template_unit_is_the_unit_for_an_instance() {
    let (unit, template) = (settings("invpnd.service"), settings("invpnd@.service"));
    assert_eq!(unit.len(), template.len());
    for (u, t) in unit.iter().zip(&template) {
        if u.starts_with("ExecStart=") {
            assert_eq!(u, "ExecStart=/usr/sbin/invpnd -c /etc/invpn/invpn.conf");
            assert_eq!(t, "ExecStart=/usr/sbin/invpnd -c /etc/invpn/%i.conf");
        } else if u.starts_with("Description=") {
            assert_eq!(t, &format!("{u} (network %i)"));
        } else {
            assert_eq!(u, t, "the units differ");
        }
    }
    // the paths the comments give are the daemon's defaults for NAME.conf
    let conf = Path::new("/etc/invpn/NAME.conf");
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/invpnd@.service"))
            .unwrap();
    let text = text.replace("\n# ", " ");
    for p in [invpn::config::default_socket(conf), invpn::config::default_cache(conf)] {
        assert!(text.contains(&p.display().to_string()), "{} not in the template", p.display());
    }
    // and say what a restart in place with a broken configuration does
    // (tests/selfheal.rs shows it refused, the daemon running on)
    for unit in ["invpnd.service", "invpnd@.service"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("etc").join(unit))
                .unwrap()
                .replace("\n# ", " ");
        assert!(text.contains("\"restart refused, the running daemon stays: ...\""), "{unit}");
        assert!(text.contains("keeps running as it was"), "{unit}");
        assert!(!text.contains("stops the daemon"), "{unit}");
    }
}

/// invpn.conf(5) on `init`: a seed answering with another MAC is a
/// warning the first time, then debug.
#[test]
fn a_seed_that_answers_with_another_mac_is_a_warning() {
    use common::*;
    if !root_or_skip("a_seed_that_answers_with_another_mac_is_a_warning") {
        return;
    }
    let pki = Pki::new();
    let mut lab = Lab::new(2);
    lab.link(0, 1, 1);
    let _a = Node::start(&lab, 0, &pki, NodeConf::new(1, mac(1)));
    // B believes node 3 is at A's address
    let b = Node::start(
        &lab,
        1,
        &pki,
        NodeConf { init: vec![seed(3, "198.18.1.1")], ..NodeConf::new(2, mac(2)) },
    );
    let expected = format!("the node answering is {}, not {} as expected", mac(1), mac(3));
    // each dial's failure is a debug line; retried after a back-off
    let dial = format!("DEBUG dial to {} at 198.18.1.1:41744 failed: {expected}", mac(3));
    assert!(wait_until(20, || b.log_count(&dial) >= 2), "{}", b.log_text());
    let warn = format!("WARN  cannot link to {} at 198.18.1.1:41744: {expected}", mac(3));
    assert_eq!(b.log_count(&warn), 1, "{}", b.log_text());
}

/// invpnctl commands of README's comparison table that other branches
/// are adding. Once one exists, the test below fails until it is removed
/// from here, so that its row is checked like the others.
const PENDING: &[&str] = &[];

/// README's table next to tinc, Nebula, WireGuard and ZeroTier: every
/// invpnctl command it names exists, answers `invpnctl help`, and is in
/// invpnctl(8).
#[test]
fn the_readme_comparison_names_real_commands() {
    use invpn::ctl::commands;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README")).unwrap();
    let manual = std::fs::read_to_string(root.join("man/invpnctl.8")).unwrap();
    let mut names: Vec<String> = Vec::new();
    let rows: Vec<&str> =
        readme.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| ---")).collect();
    assert!(rows.len() >= 20, "the table has {} rows", rows.len());
    for row in &rows[1..] {
        // the invpnctl column's `invpnctl ...` spans
        let cell = row.split(" | ").nth(1).unwrap_or("");
        for span in cell.split('`').skip(1).step_by(2) {
            let Some(rest) = span.strip_prefix("invpnctl ") else { continue };
            let words: Vec<&str> = rest
                .split_whitespace()
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
                .take(2)
                .collect();
            if words.is_empty() {
                // global options: `invpnctl -c FILE`
                continue;
            }
            // a group's action (`cert show`, `ca revoke`), else one word
            let name = if words.len() == 2 && commands::groups().contains(&words[0]) {
                words.join(" ")
            } else {
                words[0].to_string()
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut missing = Vec::new();
    for name in &names {
        let words: Vec<&str> = name.split(' ').collect();
        let exists = commands::find(&words).is_ok();
        if PENDING.contains(&name.as_str()) {
            assert!(
                !exists,
                "`invpnctl {name}` exists now: remove it from PENDING in tests/docs.rs"
            );
            missing.push(name.clone());
            continue;
        }
        assert!(exists, "README names `invpnctl {name}`, which is no command");
        let mut help = vec!["help"];
        help.extend(&words);
        let (code, out, err) = common::invpnctl(&help);
        assert!(code == 0 && out.contains(&format!("Usage: invpnctl {name}")), "{err}");
        let roff = name.replace('-', "\\-");
        assert!(
            manual.contains(&format!(".B {roff}")) || manual.contains(&format!(".BI {roff}")),
            "`invpnctl {name}` is not described in invpnctl(8)"
        );
    }
    // the rows of the issue's command names, so that none is forgotten
    for want in ["ca new", "cert new", "cert sign", "cert show", "cert verify", "status", "links"] {
        assert!(names.iter().any(|n| n == want), "README's table lacks `invpnctl {want}`");
    }
    assert_eq!(
        missing.len(),
        PENDING.len(),
        "PENDING names commands not in the table: {missing:?}"
    );
}

/// invpn.conf(5)'s EXAMPLE: each configuration it shows passes
/// `invpnd -t`, with the files it names in place (its `up` script being
/// the one the page shows).
#[test]
fn the_configuration_examples_pass_invpnd_t() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/invpn.conf.5"))
            .unwrap();
    let example = &page[page.find(".SH EXAMPLE").unwrap()..page.find(".SH FILES").unwrap()];
    let blocks: Vec<String> = example
        .split(".nf\n")
        .skip(1)
        .map(|b| {
            b.split(".fi\n").next().unwrap_or("").lines().map(unroff).collect::<Vec<_>>().join("\n")
        })
        .collect();
    let up = blocks.iter().find(|b| b.starts_with("#!/bin/sh")).expect("the up script");
    let confs: Vec<&String> = blocks.iter().filter(|b| b.contains("[ssl]")).collect();
    assert_eq!(confs.len(), 2, "{blocks:?}");
    for conf in confs {
        let s = prepare("check");
        let script = s.etc().join("invpn-up");
        std::fs::write(&script, up).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // the default cache, spelt out so that it lands in the scratch tree
        let conf = if conf.contains("cache") {
            conf.to_string()
        } else {
            format!("{conf}\n[network]\ncache = /var/lib/invpnd/invpn.cache\n")
        };
        std::fs::write(s.etc().join("invpn.conf"), s.inside(&conf)).unwrap();
        let out = s.run("invpnd -t -c /etc/invpn/invpn.conf; echo status $?");
        assert!(
            out.first().is_some_and(|l| l == "configuration /etc/invpn/invpn.conf: OK")
                && out.last().is_some_and(|l| l == "status 0"),
            "{conf}\n--\n{}",
            out.join("\n")
        );
    }
}
