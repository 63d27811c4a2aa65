//! invpnctl's commands as one table: the argument parser, the usage text,
//! `help COMMAND`, `COMMAND --help` and the shell completions
//! ([`super::completion`]) are all made from it.

use super::CtlError;

/// One `--option` of a command (or of every command).
#[derive(Debug)]
pub struct OptDef {
    /// The long name, without `--`.
    pub long: &'static str,
    /// A one-letter alias, or "".
    pub short: &'static str,
    /// The name of its value (`FILE`, `DIR`, ...), or `None` for a flag.
    pub arg: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
    /// Whether the command needs it.
    pub required: bool,
    /// Whether it may be given more than once.
    pub multi: bool,
    /// The values it takes, for completion ("" if any).
    pub values: &'static str,
}

const fn flag(long: &'static str, short: &'static str, help: &'static str) -> OptDef {
    OptDef { long, short, arg: None, help, required: false, multi: false, values: "" }
}

const fn opt(long: &'static str, arg: &'static str, help: &'static str) -> OptDef {
    OptDef { long, short: "", arg: Some(arg), help, required: false, multi: false, values: "" }
}

const fn req(long: &'static str, arg: &'static str, help: &'static str) -> OptDef {
    OptDef { required: true, ..opt(long, arg, help) }
}

const KEY_TYPE: OptDef = OptDef {
    values: "p256 p384 ed25519",
    ..opt("key-type", "T", "the key type: p256 (default), p384 or ed25519")
};

/// Where a command belongs in the usage text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Questions to a running daemon.
    Daemon,
    /// Acting on a running daemon.
    Control,
    /// Certificates.
    Certs,
    /// help and completion.
    Other,
}

impl Section {
    const ALL: [Section; 4] = [Section::Daemon, Section::Control, Section::Certs, Section::Other];

    fn heading(self) -> &'static str {
        match self {
            Section::Daemon => "Questions to a running invpnd (over its control socket):",
            Section::Control => {
                "Acting on a running invpnd (reload, restart and log --level: root or the daemon's user):"
            }
            Section::Certs => "Certificates (no openssl needed; X.509 v3, CN = the node's MAC):",
            Section::Other => "Help:",
        }
    }
}

/// What a command's operands (its arguments that are not options) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operands {
    /// None.
    None,
    /// Exactly one file.
    File,
    /// Exactly one of these words.
    Word(&'static [&'static str]),
    /// Optionally a command name (one or two words).
    Command,
}

/// One command.
#[derive(Debug)]
pub struct CommandDef {
    /// Its name: one word, or a group and an action (`cert verify`).
    pub name: &'static str,
    /// Its operands as the synopsis shows them ("" if none).
    pub operands_text: &'static str,
    /// What its operands are.
    pub operands: Operands,
    /// One line for the usage text.
    pub summary: &'static str,
    /// A paragraph for `help COMMAND`.
    pub description: &'static str,
    /// Its own options.
    pub options: &'static [OptDef],
    /// Where the usage text lists it.
    pub section: Section,
}

/// The options every command accepts, before or after it.
pub const GLOBAL: &[OptDef] = &[
    opt("socket", "PATH", "the control socket (default: from -c, else /run/invpnd.sock)"),
    OptDef {
        short: "c",
        ..opt("config", "CONF", "an invpnd configuration: its control socket, and its CA for cert verify")
    },
    flag("json", "", "print the answer as JSON"),
    opt("timeout", "S", "seconds to wait for the daemon's answer (default 5; a trace waits this long after its --wait)"),
    flag("help", "h", "help: of invpnctl, or of the command given"),
    flag("version", "V", "the version"),
];

const WAIT: &[OptDef] = &[opt("wait", "S", "seconds to wait for answers (default 2)")];
const DAYS: OptDef = opt("days", "N", "days of validity");
const CRL_DAYS: OptDef = opt("days", "N", "days until the CRL's next update (default 180)");
const CRL_OUT: OptDef = opt("out", "FILE", "where to write the CRL (default DIR/crl.pem)");

/// Every command.
pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        name: "status",
        operands_text: "",
        operands: Operands::None,
        summary: "the node: MAC, interface, uptime, links, routes, counters",
        description: "Shows the node's MAC, interface, uptime, its numbers of links, routes and cached nodes, and its traffic and drop counters.",
        options: &[],
        section: Section::Daemon,
    },
    CommandDef {
        name: "links",
        operands_text: "",
        operands: Operands::None,
        summary: "each link: peer, address, traffic, queue, round trip, last heard, cert expiry",
        description: "Lists the node's links: the peer's MAC and address, who dialled, the protocol, uptime, bytes each way, bytes queued, the queueing delay, frames dropped and marked, the TCP round-trip time and its variation, how long ago anything was received, bytes in flight, and when the peer's certificate expires.",
        options: &[],
        section: Section::Daemon,
    },
    CommandDef {
        name: "routes",
        operands_text: "",
        operands: Operands::None,
        summary: "each route: target, next hop, second path, age",
        description: "Lists the node's routes: each target node, the neighbour frames to it go through, the second path kept in reserve, and the route's age.",
        options: &[],
        section: Section::Daemon,
    },
    CommandDef {
        name: "top",
        operands_text: "",
        operands: Operands::None,
        summary: "the links and their rates, refreshed every second (q quits)",
        description: "Shows the links with their rates (bytes and messages per second each way, from successive links answers), round-trip times and queues, refreshed every second, like tinc top. On a terminal it uses the whole screen until q or Ctrl-C; otherwise it prints one frame after another.",
        options: &[OptDef { short: "n", ..opt("count", "N", "stop after N frames") }],
        section: Section::Daemon,
    },
    CommandDef {
        name: "metrics",
        operands_text: "",
        operands: Operands::None,
        summary: "every counter, gauge and per-link figure in the Prometheus text format",
        description: "Prints the node's counters, gauges and per-link figures in the Prometheus text exposition format 0.0.4, the same text the [control] metrics listener serves; with --out, writes them to a file whole (through a temporary file renamed over it), as node_exporter's textfile collector wants: invpnctl metrics --out /var/lib/node_exporter/textfile/invpn.prom.",
        options: &[opt("out", "FILE", "write to FILE, replacing it whole, instead of printing")],
        section: Section::Daemon,
    },
    CommandDef {
        name: "trace",
        operands_text: "",
        operands: Operands::None,
        summary: "every node that answers a flooded health request, with its links and routes",
        description: "Floods a health request through the mesh and shows every node that answers within --wait seconds, with its links and routes and the paths the request and the answer took.",
        options: WAIT,
        section: Section::Daemon,
    },
    CommandDef {
        name: "graph",
        operands_text: "",
        operands: Operands::None,
        summary: "the whole mesh as a Graphviz graph (dot -Tsvg renders it)",
        description: "Like trace, but prints the mesh as a Graphviz graph: invpnctl graph | dot -Tsvg > mesh.svg.",
        options: WAIT,
        section: Section::Daemon,
    },
    CommandDef {
        name: "reload",
        operands_text: "",
        operands: Operands::None,
        summary: "re-read the configuration and certificates (as SIGHUP); say what changed",
        description: "Has the daemon re-read its configuration, certificates and CRL, as SIGHUP does, and prints the outcome: what was applied, the links closed because their peer's certificate no longer verifies (revoked, another CA), and the changed settings that need a restart in place (invpnctl restart) or a full stop and start. A configuration that does not load is refused with its errors (file:line) and the daemon keeps running as it was; exit status 1. Needs root or the daemon's user.",
        options: &[],
        section: Section::Control,
    },
    CommandDef {
        name: "restart",
        operands_text: "",
        operands: Operands::None,
        summary: "re-execute the daemon in place (as SIGUSR2), keeping its interface",
        description: "Has the daemon check its configuration and certificates and, if they load, re-execute itself in place as SIGUSR2 does: the interface and its addresses are kept, links are made again, every setting but [interface] name, up and [performance] offload is applied. The daemon answers before it re-executes; invpnctl then waits (--timeout plus 10 s) for the new process to answer and prints it. A refused restart prints why (file:line) and exits with status 1; the daemon keeps running. Needs root or the daemon's user.",
        options: &[],
        section: Section::Control,
    },
    CommandDef {
        name: "log",
        operands_text: "",
        operands: Operands::None,
        summary: "the log level; --level sets it, -f follows the daemon's log",
        description: "Prints the level of the daemon's own log messages. --level sets it until the next one (or a restart): error, warn, info, debug or trace, or default for the level it started with (-v, RUST_LOG); libraries keep theirs. Setting it needs root or the daemon's user. -f prints the daemon's log lines as they come, until interrupted; a reader too slow for the daemon loses lines, and a line says how many.",
        options: &[
            OptDef {
                values: "error warn info debug trace default",
                ..opt("level", "LEVEL", "set the level: error, warn, info, debug, trace or default")
            },
            flag("follow", "f", "follow the log lines (with --json: one JSON object a line)"),
        ],
        section: Section::Control,
    },
    CommandDef {
        name: "ca new",
        operands_text: "",
        operands: Operands::None,
        summary: "a new CA: DIR/ca.crt and DIR/ca.key (default 3650 days)",
        description: "Makes a network's CA: a self-signed certificate DIR/ca.crt to give to every node and its key DIR/ca.key (mode 0600) to keep secret. Refuses to overwrite either.",
        options: &[
            req("dir", "DIR", "the directory to write ca.crt and ca.key in (made with mode 0700)"),
            opt("name", "NAME", "the CA's Common Name (default \"invpn CA\")"),
            DAYS,
            KEY_TYPE,
        ],
        section: Section::Certs,
    },
    CommandDef {
        name: "ca revoke",
        operands_text: "",
        operands: Operands::None,
        summary: "revoke node certificates: adds them to the CA's CRL (DIR/crl.pem)",
        description: "Revokes node certificates of the CA in DIR, given as files (--cert, checked to be the CA's) or serial numbers (--serial, hex as cert show prints them), and writes the CA's certificate revocation list anew: DIR/crl.pem, signed with DIR/ca.key, with the next CRL number (DIR/crlnumber) and every certificate revoked so far (DIR/revoked.txt). Copy it to every node ([ssl] crl) and reload them: their links to the revoked nodes close and no new one is accepted.",
        options: &[
            req("ca-dir", "DIR", "the CA's directory (ca.crt and ca.key)"),
            OptDef { multi: true, ..opt("cert", "FILE", "a certificate to revoke (repeatable)") },
            OptDef {
                multi: true,
                ..opt("serial", "HEX", "the serial number of a certificate to revoke (repeatable)")
            },
            OptDef {
                values: "unspecified keyCompromise CACompromise affiliationChanged superseded cessationOfOperation",
                ..opt("reason", "R", "why: keyCompromise, superseded, cessationOfOperation...")
            },
            CRL_DAYS,
            CRL_OUT,
        ],
        section: Section::Certs,
    },
    CommandDef {
        name: "ca crl",
        operands_text: "",
        operands: Operands::None,
        summary: "re-sign the CA's CRL with a new number and next update",
        description: "Writes the CA's certificate revocation list anew from DIR/revoked.txt (an empty list if nothing was revoked), with the next CRL number and a new next update. Run it before the next update passes (from cron, say monthly): invpnd keeps applying an out-of-date CRL but warns, and OpenSSL-based tools refuse it.",
        options: &[req("ca-dir", "DIR", "the CA's directory (ca.crt and ca.key)"), CRL_DAYS, CRL_OUT],
        section: Section::Certs,
    },
    CommandDef {
        name: "cert new",
        operands_text: "",
        operands: Operands::None,
        summary: "a node's key and certificate PREFIX.key, PREFIX.crt (default 825 days)",
        description: "Makes a node's key (PREFIX.key, mode 0600) and its certificate (PREFIX.crt) signed by the CA in DIR, with the MAC as Common Name; --mac random picks a locally administered one.",
        options: &[
            req("ca-dir", "DIR", "the CA's directory (ca.crt and ca.key)"),
            OptDef { values: "random", ..req("mac", "MAC", "the node's MAC, or random") },
            req("out", "PREFIX", "where to write PREFIX.crt and PREFIX.key"),
            DAYS,
            KEY_TYPE,
        ],
        section: Section::Certs,
    },
    CommandDef {
        name: "cert request",
        operands_text: "",
        operands: Operands::None,
        summary: "a node's key and a signing request PREFIX.key, PREFIX.csr",
        description: "Makes a node's key (PREFIX.key, mode 0600, it stays on the node) and a certificate signing request (PREFIX.csr) for the CA host to sign with cert sign.",
        options: &[
            OptDef { values: "random", ..req("mac", "MAC", "the node's MAC, or random") },
            req("out", "PREFIX", "where to write PREFIX.csr and PREFIX.key"),
            KEY_TYPE,
        ],
        section: Section::Certs,
    },
    CommandDef {
        name: "cert sign",
        operands_text: "",
        operands: Operands::None,
        summary: "signs a request (invpnctl's or openssl's) as a node certificate",
        description: "Signs a certificate signing request whose Common Name is a MAC: the certificate gets invpnd's node profile (X.509 v3, CA:FALSE, TLS client and server use) whatever the request asked for.",
        options: &[
            req("ca-dir", "DIR", "the CA's directory (ca.crt and ca.key)"),
            req("csr", "FILE", "the request (PEM)"),
            req("out", "FILE", "where to write the certificate"),
            DAYS,
        ],
        section: Section::Certs,
    },
    CommandDef {
        name: "cert show",
        operands_text: "FILE",
        operands: Operands::File,
        summary: "what a certificate or a signing request says",
        description: "Prints what a PEM certificate (or each of a chain) or certificate signing request says: MAC, subject, issuer, serial, version, validity, key, usages, fingerprint.",
        options: &[],
        section: Section::Certs,
    },
    CommandDef {
        name: "cert verify",
        operands_text: "FILE",
        operands: Operands::File,
        summary: "whether invpnd would accept a node certificate; exit 0 if so, 1 if not",
        description: "Checks a node certificate (PEM, optionally followed by intermediates) as invpnd's peers do, as a client and as a server: the chain to the CA, the validity dates, a Common Name that is a node's MAC, the key usages (digitalSignature; TLS server and client authentication), X.509 v3, and with --crl that it is not revoked. Prints one line per problem, `label: explanation`; expiry within 30 days is a warning. Exit status 0: valid; 1: invalid; 2: a usage error or an unreadable file.",
        options: &[
            opt("ca", "FILE", "the network's CA certificate (default: [ssl] ca of -c CONF; without either, the chain is not checked)"),
            OptDef {
                multi: true,
                ..opt("crl", "FILE", "a certificate revocation list of the CA (PEM or DER; repeatable)")
            },
        ],
        section: Section::Certs,
    },
    CommandDef {
        name: "help",
        operands_text: "[COMMAND]",
        operands: Operands::Command,
        summary: "this text, or a command's",
        description: "Prints the usage text, or a command's synopsis, description and options (as COMMAND --help does).",
        options: &[],
        section: Section::Other,
    },
    CommandDef {
        name: "completion",
        operands_text: "bash|zsh",
        operands: Operands::Word(&["bash", "zsh"]),
        summary: "a shell completion script",
        description: "Prints a completion script for bash or zsh. bash: invpnctl completion bash > /etc/bash_completion.d/invpnctl; zsh: invpnctl completion zsh > \"${fpath[1]}/_invpnctl\".",
        options: &[],
        section: Section::Other,
    },
];

/// The words that begin two-word commands (`ca`, `cert`), in table order.
pub fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = Vec::new();
    for c in COMMANDS {
        if let Some((group, _)) = c.name.split_once(' ') {
            if !g.contains(&group) {
                g.push(group);
            }
        }
    }
    g
}

/// The commands whose first word is `group`.
pub fn actions(group: &str) -> impl Iterator<Item = &'static CommandDef> + '_ {
    COMMANDS.iter().filter(move |c| c.name.split_once(' ').is_some_and(|(g, _)| g == group))
}

/// The command named by `words` (one or two), or why there is none.
pub fn find(words: &[&str]) -> Result<&'static CommandDef, CtlError> {
    let name = words.join(" ");
    if let Some(c) = COMMANDS.iter().find(|c| c.name == name) {
        return Ok(c);
    }
    let first = words.first().copied().unwrap_or("");
    if groups().contains(&first) {
        let names: Vec<&str> =
            actions(first).map(|c| c.name.split_once(' ').map_or(c.name, |(_, a)| a)).collect();
        let action = words.get(1).copied().unwrap_or("");
        return Err(CtlError::Usage(format!(
            "unknown `{first}` action {action:?}: expected {} (see invpnctl help {first})",
            names.join(", ")
        )));
    }
    Err(CtlError::Usage(format!("unknown command {name:?} (see invpnctl --help)")))
}

/// The synopsis line of a command: `invpnctl NAME OPERANDS OPTIONS`.
pub fn synopsis(c: &CommandDef) -> String {
    let mut s = c.name.to_string();
    if !c.operands_text.is_empty() {
        s.push(' ');
        s.push_str(c.operands_text);
    }
    for o in c.options {
        let one = match o.arg {
            Some(a) => format!("--{} {a}", o.long),
            None => format!("--{}", o.long),
        };
        s.push(' ');
        s.push_str(&if o.required { one } else { format!("[{one}]") });
        if o.multi {
            s.push_str("...");
        }
    }
    s
}

fn option_lines(opts: &[OptDef]) -> String {
    let mut s = String::new();
    for o in opts {
        let mut left = match o.short {
            "" => format!("    --{}", o.long),
            sh => format!("-{sh}, --{}", o.long),
        };
        if let Some(a) = o.arg {
            left.push(' ');
            left.push_str(a);
        }
        let help = wrap(o.help, 56).replace('\n', &format!("\n{:22}", ""));
        if left.len() > 18 {
            s.push_str(&format!("  {left}\n  {:20}{help}\n", ""));
        } else {
            s.push_str(&format!("  {left:<18}  {help}\n"));
        }
    }
    s
}

/// The usage text (`invpnctl --help`).
pub fn usage() -> String {
    let mut s = String::from("Usage: invpnctl [OPTIONS] COMMAND [ARGS]\n");
    for sec in Section::ALL {
        s.push('\n');
        s.push_str(sec.heading());
        s.push('\n');
        for c in COMMANDS.iter().filter(|c| c.section == sec) {
            let syn = synopsis(c);
            if syn.len() > 22 {
                s.push_str(&format!("  {syn}\n  {:24}{}\n", "", c.summary));
            } else {
                s.push_str(&format!("  {syn:<22}  {}\n", c.summary));
            }
        }
    }
    s.push_str("\nOptions (before or after the command):\n");
    s.push_str(&option_lines(GLOBAL));
    s.push_str(
        "\nExit status: 0 on success, 1 on failure; cert verify: 0 valid, 1 invalid,\n\
         2 usage error or unreadable file.\n\
         `invpnctl help COMMAND` or `invpnctl COMMAND --help` describes a command.\n",
    );
    s
}

/// `help COMMAND`: a command's synopsis, description and options; for a
/// group (`cert`) its actions.
pub fn help(words: &[&str]) -> Result<String, CtlError> {
    if let [group] = words {
        if groups().contains(group) {
            let mut s = format!("Usage: invpnctl {group} ACTION ...\n\n");
            for c in actions(group) {
                s.push_str(&format!("  {}\n      {}\n", synopsis(c), c.summary));
            }
            s.push_str(&format!("\n`invpnctl help {group} ACTION` describes one.\n"));
            return Ok(s);
        }
    }
    let c = find(words)?;
    let mut s = format!("Usage: invpnctl {}\n\n{}\n", synopsis(c), wrap(c.description, 76));
    if !c.options.is_empty() {
        s.push_str("\nOptions:\n");
        s.push_str(&option_lines(c.options));
    }
    s.push_str("\nGlobal options (before or after the command):\n");
    s.push_str(&option_lines(GLOBAL));
    Ok(s)
}

fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + w.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out.push_str(&line);
    out
}

/// A getopts parser for the global options and, if given, a command's.
pub fn options(c: Option<&CommandDef>) -> getopts::Options {
    let mut o = getopts::Options::new();
    for d in GLOBAL.iter().chain(c.map_or(&[][..], |c| c.options)) {
        let hint = d.arg.unwrap_or("");
        match (d.arg.is_some(), d.multi) {
            (false, _) => o.optflag(d.short, d.long, d.help),
            (true, false) => o.optopt(d.short, d.long, d.help, hint),
            (true, true) => o.optmulti(d.short, d.long, d.help, hint),
        };
    }
    o
}

/// The command line split: the command's words (none, one or two) and
/// everything else, for getopts. Global options may come anywhere, so
/// the command's words are the first arguments that are neither options
/// nor the value of a global option.
pub fn split(args: &[String]) -> (Vec<String>, Vec<String>) {
    let takes_value = |a: &str| {
        GLOBAL.iter().any(|d| {
            d.arg.is_some()
                && (a == format!("--{}", d.long)
                    || (!d.short.is_empty() && a == format!("-{}", d.short)))
        })
    };
    let mut words = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let want_word = match words.first().map(String::as_str) {
            None => true,
            Some(w) => words.len() == 1 && groups().contains(&w),
        };
        if a == "--" || !want_word {
            rest.extend_from_slice(&args[i..]);
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            rest.push(a.clone());
            if takes_value(a) {
                if let Some(v) = args.get(i + 1) {
                    rest.push(v.clone());
                    i += 1;
                }
            }
        } else {
            words.push(a.clone());
        }
        i += 1;
    }
    (words, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_words_are_found_among_global_options() {
        let (w, rest) = split(&strings(&["--socket", "status", "-c", "x", "status", "--json"]));
        assert_eq!(w, ["status"]);
        assert_eq!(rest, ["--socket", "status", "-c", "x", "--json"]);
        let (w, rest) =
            split(&strings(&["--json", "cert", "--timeout", "3", "verify", "f", "--ca", "c"]));
        assert_eq!(w, ["cert", "verify"]);
        assert_eq!(rest, ["--json", "--timeout", "3", "f", "--ca", "c"]);
        // a one-word command takes no second word; help takes its operands
        let (w, rest) = split(&strings(&["help", "cert", "verify"]));
        assert_eq!((w, rest), (strings(&["help"]), strings(&["cert", "verify"])));
        let (w, _) = split(&strings(&["--json"]));
        assert!(w.is_empty());
    }

    #[test]
    fn the_table_is_consistent() {
        for c in COMMANDS {
            let all: Vec<&str> = GLOBAL.iter().chain(c.options).map(|o| o.long).collect();
            for (i, o) in all.iter().enumerate() {
                assert!(!all[i + 1..].contains(o), "{}: --{o} twice", c.name);
            }
            assert!(find(&c.name.split(' ').collect::<Vec<_>>()).is_ok(), "{}", c.name);
            assert!(help(&c.name.split(' ').collect::<Vec<_>>()).is_ok());
            // getopts accepts the option set
            let _ = options(Some(c));
        }
        assert_eq!(groups(), ["ca", "cert"]);
        assert!(find(&["ca", "frob"]).unwrap_err().to_string().contains("new, revoke, crl"));
        assert!(find(&["cert", "frob"])
            .unwrap_err()
            .to_string()
            .contains("new, request, sign, show, verify"));
    }
}
