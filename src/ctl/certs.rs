//! `invpnctl ca ...` and `invpnctl cert ...`: a network's certificates made
//! with rcgen, usable by invpnd and by invpn 0.4 alike.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::CtlError;
use crate::core::Mac;
use crate::pki::{self, KeyType, Validity};
use crate::tls::cert_info::{unix_to_text, CertInfo};

fn e(msg: impl Into<String>) -> CtlError {
    CtlError(msg.into())
}

/// Runs `ca ...` or `cert ...`.
pub fn run(cmd: &str, args: &[String]) -> Result<(), CtlError> {
    let action = args.first().map(String::as_str).unwrap_or("");
    let rest = args.get(1..).unwrap_or(&[]);
    match (cmd, action) {
        ("ca", "new") => ca_new(rest),
        ("cert", "new") => cert_new(rest),
        ("cert", "request") => cert_request(rest),
        ("cert", "sign") => cert_sign(rest),
        ("cert", "show") => cert_show(rest),
        ("ca", _) => Err(e(format!("unknown `ca` action {action:?}: expected `ca new`"))),
        _ => {
            Err(e(format!("unknown `cert` action {action:?}: expected new, request, sign or show")))
        }
    }
}

fn parse(args: &[String], spec: &[(&str, bool)]) -> Result<getopts::Matches, CtlError> {
    let mut o = getopts::Options::new();
    for (name, _) in spec {
        o.optopt("", name, "", "VALUE");
    }
    let m = o.parse(args).map_err(|err| e(err.to_string()))?;
    for (name, required) in spec {
        if *required && !m.opt_present(name) {
            return Err(e(format!("--{name} is required")));
        }
    }
    if let Some(extra) = m.free.first() {
        return Err(e(format!("unexpected argument {extra:?}")));
    }
    Ok(m)
}

fn days(m: &getopts::Matches, default: u32) -> Result<u32, CtlError> {
    match m.opt_str("days") {
        None => Ok(default),
        Some(d) => match d.parse::<u32>() {
            Ok(n) if (1..=36_500).contains(&n) => Ok(n),
            _ => Err(e(format!("--days {d:?}: expected a number of days from 1 to 36500"))),
        },
    }
}

fn key_type(m: &getopts::Matches) -> Result<KeyType, CtlError> {
    match m.opt_str("key-type") {
        None => Ok(KeyType::default()),
        Some(t) => KeyType::parse(&t)
            .ok_or_else(|| e(format!("--key-type {t:?}: expected p256, p384 or ed25519"))),
    }
}

fn mac(m: &getopts::Matches) -> Result<Mac, CtlError> {
    let v = m.opt_str("mac").unwrap_or_default();
    if v == "random" {
        return Ok(pki::random_mac());
    }
    let mac: Mac =
        v.parse().map_err(|err: crate::core::mac::MacParseError| e(format!("--mac: {err}")))?;
    if !mac.is_node_address() {
        return Err(e(format!("--mac {mac}: a node's MAC must be unicast and not all zero")));
    }
    Ok(mac)
}

/// Writes a new file; refuses to replace one. Keys get mode 0600.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CtlError> {
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|err| {
            match err.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    e(format!("{} exists; refusing to overwrite it", path.display()))
                }
                _ => e(format!("{}: cannot create: {err}", path.display())),
            }
        })?;
    f.write_all(contents.as_bytes()).map_err(|err| e(format!("{}: {err}", path.display())))?;
    Ok(())
}

fn refuse_existing(paths: &[&Path]) -> Result<(), CtlError> {
    for p in paths {
        if p.exists() {
            return Err(e(format!("{} exists; refusing to overwrite it", p.display())));
        }
    }
    Ok(())
}

fn with_ext(prefix: &str, ext: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}.{ext}"))
}

fn ca_new(args: &[String]) -> Result<(), CtlError> {
    let m = parse(args, &[("dir", true), ("name", false), ("days", false), ("key-type", false)])?;
    let dir = PathBuf::from(m.opt_str("dir").unwrap_or_default());
    let name = m.opt_str("name").unwrap_or_else(|| "invpn CA".to_string());
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    refuse_existing(&[&crt, &key])?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|err| e(format!("{}: cannot create: {err}", dir.display())))?;
    let ca = pki::new_ca(&name, Validity::days_from_now(days(&m, 3650)?), key_type(&m)?)?;
    write_new(&key, &ca.key_pem, 0o600)?;
    write_new(&crt, &ca.cert_pem, 0o644)?;
    println!("CA \"{name}\" written:");
    println!("  {}  the network's CA certificate: give it to every node", crt.display());
    println!("  {}  its private key (mode 0600): keep it secret, ideally offline", key.display());
    Ok(())
}

fn warn_outlives_ca(ca: &pki::CertAndKey, days: u32) {
    let ca_info = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
        .ok()
        .and_then(|d| CertInfo::from_der(&d).ok());
    if let Some(i) = ca_info {
        let until = time::OffsetDateTime::now_utc().unix_timestamp() + i64::from(days) * 86_400;
        if until > i.not_after {
            eprintln!(
                "invpnctl: warning: the CA expires on {}, before this certificate would",
                unix_to_text(i.not_after)
            );
        }
    }
}

fn cert_new(args: &[String]) -> Result<(), CtlError> {
    let m = parse(
        args,
        &[("ca-dir", true), ("mac", true), ("out", true), ("days", false), ("key-type", false)],
    )?;
    let mac = mac(&m)?;
    let prefix = m.opt_str("out").unwrap_or_default();
    let (crt, key) = (with_ext(&prefix, "crt"), with_ext(&prefix, "key"));
    refuse_existing(&[&crt, &key])?;
    let ca = pki::load_ca(Path::new(&m.opt_str("ca-dir").unwrap_or_default()))?;
    let days = days(&m, 825)?;
    warn_outlives_ca(&ca, days);
    let node = pki::new_node(&ca, mac, Validity::days_from_now(days), key_type(&m)?)?;
    write_new(&key, &node.key_pem, 0o600)?;
    write_new(&crt, &node.cert_pem, 0o644)?;
    println!(
        "certificate for {mac} written: {} (and its key {}, mode 0600)",
        crt.display(),
        key.display()
    );
    Ok(())
}

fn cert_request(args: &[String]) -> Result<(), CtlError> {
    let m = parse(args, &[("mac", true), ("out", true), ("key-type", false)])?;
    let mac = mac(&m)?;
    let prefix = m.opt_str("out").unwrap_or_default();
    let (csr, key) = (with_ext(&prefix, "csr"), with_ext(&prefix, "key"));
    refuse_existing(&[&csr, &key])?;
    let (csr_pem, key_pem) = pki::new_request(mac, key_type(&m)?)?;
    write_new(&key, &key_pem, 0o600)?;
    write_new(&csr, &csr_pem, 0o644)?;
    println!(
        "key {} (mode 0600, stays on this node) and request {} for {mac} written;",
        key.display(),
        csr.display()
    );
    println!(
        "sign the request on the CA host: invpnctl cert sign --ca-dir DIR --csr {} --out {}",
        csr.display(),
        with_ext(&prefix, "crt").display()
    );
    Ok(())
}

fn cert_sign(args: &[String]) -> Result<(), CtlError> {
    let m = parse(args, &[("ca-dir", true), ("csr", true), ("out", true), ("days", false)])?;
    let csr_path = PathBuf::from(m.opt_str("csr").unwrap_or_default());
    let out = PathBuf::from(m.opt_str("out").unwrap_or_default());
    refuse_existing(&[&out])?;
    let csr = std::fs::read_to_string(&csr_path)
        .map_err(|err| e(format!("{}: cannot read: {err}", csr_path.display())))?;
    let ca = pki::load_ca(Path::new(&m.opt_str("ca-dir").unwrap_or_default()))?;
    let days = days(&m, 825)?;
    warn_outlives_ca(&ca, days);
    let (pem, mac) = pki::sign_request(&ca, &csr, Validity::days_from_now(days))
        .map_err(|err| e(format!("{}: {err}", csr_path.display())))?;
    write_new(&out, &pem, 0o644)?;
    println!("certificate for {mac} (X.509 v3) written: {}", out.display());
    Ok(())
}

fn cert_show(args: &[String]) -> Result<(), CtlError> {
    let [file] = args else {
        return Err(e("usage: invpnctl cert show FILE"));
    };
    let pem = std::fs::read(file).map_err(|err| e(format!("{file}: cannot read: {err}")))?;
    let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|err| e(format!("{file}: bad PEM: {err}")))?;
    if certs.is_empty() {
        return Err(e(format!("{file}: no certificate in this file")));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (i, der) in certs.iter().enumerate() {
        let info = CertInfo::from_der(der).map_err(|err| e(format!("{file}: {err}")))?;
        if certs.len() > 1 {
            println!("certificate {} of {}:", i + 1, certs.len());
        }
        print!("{}", describe(&info, der, now));
    }
    Ok(())
}

/// The `cert show` text for one certificate.
pub fn describe(info: &CertInfo, der: &[u8], now: i64) -> String {
    let mac = match (info.is_ca, info.mac()) {
        (true, _) => "- (a CA certificate)".to_string(),
        (false, Ok(m)) => m.to_string(),
        (false, Err(why)) => format!("NONE: {why}"),
    };
    let days = info.days_left(now);
    let state = if now < info.not_before {
        "NOT VALID YET".to_string()
    } else if days < 0 {
        format!("EXPIRED {} day(s) ago", -days)
    } else {
        format!("{days} day(s) left")
    };
    let fp = ring::digest::digest(&ring::digest::SHA256, der);
    let fp: Vec<String> = fp.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    let mut s = String::new();
    s.push_str(&format!("  MAC:          {mac}\n"));
    s.push_str(&format!("  subject:      {}\n", info.subject));
    s.push_str(&format!("  issuer:       {}\n", info.issuer));
    s.push_str(&format!(
        "  version:      X.509 v{}{}\n",
        info.version,
        if info.version == 3 {
            ""
        } else {
            " (refused by TLS peers: re-issue with `invpnctl cert sign`)"
        }
    ));
    s.push_str(&format!("  valid from:   {}\n", unix_to_text(info.not_before)));
    s.push_str(&format!("  valid until:  {} ({state})\n", unix_to_text(info.not_after)));
    s.push_str(&format!("  key:          {}\n", info.key_type));
    s.push_str(&format!("  CA:           {}\n", if info.is_ca { "yes" } else { "no" }));
    s.push_str(&format!("  SHA-256:      {}\n", fp.join(":")));
    s
}
