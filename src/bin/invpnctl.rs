//! invpnctl: certificates for an invpn network, and the state of a running
//! invpnd (status, links, routes, a trace of the mesh and its graph).
//!
//! The commands, their options and help come from one table
//! (`invpn::ctl::commands`); global options may come before or after the
//! command.

use std::process::ExitCode;
use std::time::Duration;

use invpn::ctl::commands::{self, Operands};
use invpn::ctl::{self, certs, completion, manage, query, top, CtlError};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (words, rest) = commands::split(&args);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let wants_help = rest.iter().take_while(|a| *a != "--").any(|a| a == "-h" || a == "--help");
    // `cert --help`: the group's actions
    if wants_help && words.len() == 1 && commands::groups().contains(&words[0]) {
        return print_help(&words);
    }
    let cmd = match words.first() {
        None => None,
        Some(_) => match commands::find(&words) {
            Ok(c) => Some(c),
            Err(e) => return fail(&e, 1),
        },
    };
    // a usage error of `cert verify` is status 2: its 1 means "invalid"
    let error_status = if cmd.is_some_and(|c| c.name == "cert verify") { 2 } else { 1 };
    let m = match commands::options(cmd).parse(&rest) {
        Ok(m) => m,
        Err(e) => {
            let see = cmd.map_or("--help".to_string(), |c| format!("help {}", c.name));
            return fail(&CtlError::Usage(format!("{e} (see invpnctl {see})")), error_status);
        }
    };
    if m.opt_present("h") {
        return match cmd {
            None => show(&commands::usage()),
            Some(c) => print_help(&c.name.split(' ').collect::<Vec<_>>()),
        };
    }
    if m.opt_present("V") {
        return show(&format!("invpnctl {}\n", env!("CARGO_PKG_VERSION")));
    }
    let Some(cmd) = cmd else {
        return fail(&CtlError::Usage(format!("no command\n{}", commands::usage())), 1);
    };
    if let Err(e) = check_args(cmd, &m) {
        return fail(&e, error_status);
    }
    let json = m.opt_present("json");
    let result = match cmd.name {
        "help" => return print_help(&m.free.iter().map(String::as_str).collect::<Vec<_>>()),
        "completion" => {
            completion::script(&m.free[0]).and_then(|s| ctl::print(format_args!("{s}"))).map(|()| 0)
        }
        "top" if json => {
            Err(CtlError::Usage("top has no JSON form (links --json has the figures)".into()))
        }
        "top" => timeout(&m).and_then(|t| {
            let sock = ctl::socket_path(m.opt_str("socket"), m.opt_str("c"))?;
            top::run(&sock, count(&m)?, t).map(|()| 0)
        }),
        "metrics" => timeout(&m).and_then(|t| {
            let sock = ctl::socket_path(m.opt_str("socket"), m.opt_str("c"))?;
            let out = m.opt_str("out").map(std::path::PathBuf::from);
            query::metrics(&sock, out.as_deref(), json, t).map(|()| 0)
        }),
        "status" | "links" | "routes" | "trace" | "graph" => timeout(&m).and_then(|t| {
            let sock = ctl::socket_path(m.opt_str("socket"), m.opt_str("c"))?;
            let wait = cmd.options.iter().any(|o| o.long == "wait").then(|| m.opt_str("wait"));
            query::run(cmd.name, wait.flatten().as_deref(), &sock, json, t).map(|()| 0)
        }),
        "reload" | "restart" | "log" => timeout(&m).and_then(|t| {
            let sock = ctl::socket_path(m.opt_str("socket"), m.opt_str("c"))?;
            manage::run(cmd.name, &m, &sock, json, t)
        }),
        name => {
            let ca = match (name, m.opt_str("c")) {
                ("cert verify", Some(conf)) if !m.opt_present("ca") => {
                    ctl::ca_of_config(&conf).map(Some)
                }
                _ => Ok(None),
            };
            ca.and_then(|ca| certs::run(name, &m, json, ca))
        }
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(e) => fail(&e, error_status),
    }
}

/// The checks the table allows: required options, the number of operands.
fn check_args(cmd: &commands::CommandDef, m: &getopts::Matches) -> Result<(), CtlError> {
    for o in cmd.options.iter().filter(|o| o.required) {
        if !m.opt_present(o.long) {
            return Err(CtlError::Usage(format!(
                "--{} is required (see invpnctl help {})",
                o.long, cmd.name
            )));
        }
    }
    let n = m.free.len();
    let ok = match cmd.operands {
        Operands::None => n == 0,
        Operands::File => n == 1,
        Operands::Word(w) => n == 1 && w.contains(&m.free[0].as_str()),
        Operands::Command => n <= 2,
    };
    if ok {
        return Ok(());
    }
    match (cmd.operands, m.free.first()) {
        (Operands::None, Some(extra)) => {
            Err(CtlError::Usage(format!("{}: unexpected argument {extra:?}", cmd.name)))
        }
        _ => Err(CtlError::Usage(format!("usage: invpnctl {}", commands::synopsis(cmd)))),
    }
}

fn timeout(m: &getopts::Matches) -> Result<Duration, CtlError> {
    match m.opt_str("timeout").map(|t| t.parse::<f64>()) {
        None => Ok(Duration::from_secs(5)),
        Some(Ok(t)) if t > 0.0 && t <= 600.0 => Ok(Duration::from_secs_f64(t)),
        Some(_) => {
            Err(CtlError::Usage("--timeout: expected seconds, more than 0 and at most 600".into()))
        }
    }
}

fn count(m: &getopts::Matches) -> Result<Option<u64>, CtlError> {
    match m.opt_str("count").map(|c| c.parse::<u64>()) {
        None => Ok(None),
        Some(Ok(n)) if n > 0 => Ok(Some(n)),
        Some(_) => Err(CtlError::Usage("--count: expected a number of frames, at least 1".into())),
    }
}

fn print_help(words: &[&str]) -> ExitCode {
    if words.is_empty() {
        return show(&commands::usage());
    }
    match commands::help(words) {
        Ok(t) => show(&t),
        Err(e) => fail(&e, 1),
    }
}

/// Prints `text`: status 0, unless standard output fails.
fn show(text: &str) -> ExitCode {
    match ctl::print(format_args!("{text}")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, 1),
    }
}

/// Reports `e` with `status`; a reader that closed standard output
/// (`invpnctl routes | head -2`) is no failure: status 0, nothing said.
fn fail(e: &CtlError, status: u8) -> ExitCode {
    if e.is_closed_output() {
        return ExitCode::SUCCESS;
    }
    eprintln!("invpnctl: {e}");
    ExitCode::from(status)
}
