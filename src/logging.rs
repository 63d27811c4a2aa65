//! Log output for operators: `LEVEL message` with a UTC timestamp on a
//! terminal or in a file, or with syslog priority prefixes (`<3>` ...) and no
//! timestamp under systemd's journal, which adds its own.

use std::io::Write;

/// Sets up logging: `RUST_LOG` if set, else info (`verbose` 1: debug,
/// 2 or more: trace) for invpn's own modules and warnings for libraries.
pub fn init(verbose: usize) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let default = format!("warn,invpn={level},invpnd={level},invpnctl={level}");
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    if journal {
        b.format(|f, r| {
            let prio = match r.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(f, "<{prio}>{}", r.args())
        });
    } else {
        b.format(|f, r| writeln!(f, "{} {:<5} {}", f.timestamp_millis(), r.level(), r.args()));
    }
    let _ = b.try_init();
}
