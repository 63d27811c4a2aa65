//! invpnctl: certificates for an invpn network, and the state of a running
//! invpnd (status, links, routes, a trace of the mesh and its graph).

use std::process::ExitCode;

use invpn::ctl::{self, certs, query, CtlError};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = getopts::Options::new();
    opts.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    opts.optopt("", "socket", "control socket", "PATH");
    opts.optopt("c", "config", "invpnd configuration", "CONF");
    opts.optflag("", "json", "JSON output");
    opts.optopt("", "timeout", "seconds to wait for the daemon", "S");
    opts.optflag("h", "help", "help");
    opts.optflag("V", "version", "version");
    let m = match opts.parse(&args) {
        Ok(m) => m,
        Err(e) => return fail(&CtlError(format!("{e}\n{}", ctl::USAGE))),
    };
    if m.opt_present("h") {
        println!("{}", ctl::USAGE);
        return ExitCode::SUCCESS;
    }
    if m.opt_present("V") {
        println!("invpnctl {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let json = m.opt_present("json");
    let timeout = match m.opt_str("timeout").map(|t| t.parse::<f64>()) {
        None => std::time::Duration::from_secs(5),
        Some(Ok(t)) if t > 0.0 && t <= 600.0 => std::time::Duration::from_secs_f64(t),
        Some(_) => {
            return fail(&CtlError(
                "--timeout: expected seconds, more than 0 and at most 600".into(),
            ))
        }
    };
    let rest = &m.free;
    let Some(cmd) = rest.first() else {
        return fail(&CtlError(format!("no command\n{}", ctl::USAGE)));
    };
    let sub = &rest[1..];
    let result = match cmd.as_str() {
        "ca" | "cert" => certs::run(cmd, sub),
        "status" | "links" | "routes" | "trace" | "graph" => {
            ctl::socket_path(m.opt_str("socket"), m.opt_str("c"))
                .and_then(|sock| query::run(cmd, sub, &sock, json, timeout))
        }
        other => Err(CtlError(format!("unknown command {other:?} (see invpnctl --help)"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &CtlError) -> ExitCode {
    eprintln!("invpnctl: {e}");
    ExitCode::from(1)
}
