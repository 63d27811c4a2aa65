//! `invpnctl ca ...` and `invpnctl cert ...`: a network's certificates made
//! with rcgen, usable by invpnd and by invpn 0.4 alike.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use serde::Serialize;

use super::inspect::{self, CertFields, RequestFields};
use super::{verify, CtlError};
use crate::core::Mac;
use crate::pki::{self, KeyType, Validity};
use crate::tls::cert_info::{unix_to_text, CertInfo};

/// An option's bad value.
fn usage(msg: impl Into<String>) -> CtlError {
    CtlError::Usage(msg.into())
}

/// A file's problem (the message names it).
fn file_error(msg: impl Into<String>) -> CtlError {
    CtlError::File(msg.into())
}

/// Anything else.
fn e(msg: impl Into<String>) -> CtlError {
    CtlError::Failed(msg.into())
}

/// What `--json` prints for a command that writes files: the paths
/// written and what the certificate (or request) says.
#[derive(Debug, Serialize)]
struct Written {
    written: Vec<WrittenFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<CertFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestFields>,
}

#[derive(Debug, Serialize)]
struct WrittenFile {
    path: PathBuf,
    what: &'static str,
}

fn print_json(v: &impl Serialize) -> Result<(), CtlError> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn written_cert(files: Vec<WrittenFile>, pem: &str) -> Result<Written, CtlError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|err| e(format!("reading back the certificate: {err}")))?;
    let fields = CertFields::from_der(&der, now()).map_err(e)?;
    Ok(Written { written: files, certificate: Some(fields), request: None })
}

/// Runs `ca new` or one of the `cert` commands with its parsed options;
/// returns the exit status (for `cert verify`, 1 when the certificate is
/// invalid). `ca_default` is the CA of `-c CONF`, for `cert verify`.
pub fn run(
    name: &str,
    m: &getopts::Matches,
    json: bool,
    ca_default: Option<PathBuf>,
) -> Result<u8, CtlError> {
    match name {
        "ca new" => ca_new(m, json),
        "ca revoke" => super::revoke::run(m, json, true),
        "ca crl" => super::revoke::run(m, json, false),
        "cert new" => cert_new(m, json),
        "cert request" => cert_request(m, json),
        "cert sign" => cert_sign(m, json),
        "cert show" => cert_show(m, json),
        "cert verify" => return cert_verify(m, json, ca_default),
        _ => Err(usage(format!("{name}: not a certificate command"))),
    }
    .map(|()| 0)
}

fn opt(m: &getopts::Matches, name: &str) -> String {
    m.opt_str(name).unwrap_or_default()
}

fn days(m: &getopts::Matches, default: u32) -> Result<u32, CtlError> {
    match m.opt_str("days") {
        None => Ok(default),
        Some(d) => match d.parse::<u32>() {
            Ok(n) if (1..=36_500).contains(&n) => Ok(n),
            _ => Err(usage(format!("--days {d:?}: expected a number of days from 1 to 36500"))),
        },
    }
}

fn key_type(m: &getopts::Matches) -> Result<KeyType, CtlError> {
    match m.opt_str("key-type") {
        None => Ok(KeyType::default()),
        Some(t) => KeyType::parse(&t)
            .ok_or_else(|| usage(format!("--key-type {t:?}: expected p256, p384 or ed25519"))),
    }
}

fn mac(m: &getopts::Matches) -> Result<Mac, CtlError> {
    let v = m.opt_str("mac").unwrap_or_default();
    if v == "random" {
        return pki::random_mac().map_err(|err| e(err.to_string()));
    }
    let mac: Mac =
        v.parse().map_err(|err: crate::core::mac::MacParseError| usage(format!("--mac: {err}")))?;
    if !mac.is_node_address() {
        return Err(usage(format!("--mac {mac}: a node's MAC must be unicast and not all zero")));
    }
    Ok(mac)
}

/// Writes a new file; refuses to replace one. Keys get mode 0600.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CtlError> {
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|err| {
            match err.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    file_error(format!("{} exists; refusing to overwrite it", path.display()))
                }
                _ => file_error(format!("{}: cannot create: {err}", path.display())),
            }
        })?;
    f.write_all(contents.as_bytes())
        .map_err(|err| file_error(format!("{}: {err}", path.display())))?;
    Ok(())
}

fn refuse_existing(paths: &[&Path]) -> Result<(), CtlError> {
    for p in paths {
        if p.exists() {
            return Err(file_error(format!("{} exists; refusing to overwrite it", p.display())));
        }
    }
    Ok(())
}

fn with_ext(prefix: &str, ext: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}.{ext}"))
}

fn ca_new(m: &getopts::Matches, json: bool) -> Result<(), CtlError> {
    let dir = PathBuf::from(opt(m, "dir"));
    let name = m.opt_str("name").unwrap_or_else(|| "invpn CA".to_string());
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    refuse_existing(&[&crt, &key])?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|err| file_error(format!("{}: cannot create: {err}", dir.display())))?;
    let ca = pki::new_ca(&name, Validity::days_from_now(days(m, 3650)?), key_type(m)?)?;
    write_new(&key, &ca.key_pem, 0o600)?;
    write_new(&crt, &ca.cert_pem, 0o644)?;
    if json {
        let files = vec![
            WrittenFile { path: crt, what: "CA certificate" },
            WrittenFile { path: key, what: "CA key" },
        ];
        return print_json(&written_cert(files, &ca.cert_pem)?);
    }
    outln!("CA \"{name}\" written:")?;
    outln!("  {}  the network's CA certificate: give it to every node", crt.display())?;
    outln!("  {}  its private key (mode 0600): keep it secret, ideally offline", key.display())?;
    Ok(())
}

fn warn_outlives_ca(ca: &pki::CertAndKey, days: u32) {
    let ca_info = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
        .ok()
        .and_then(|d| CertInfo::from_der(&d).ok());
    if let Some(i) = ca_info {
        let until = now() + i64::from(days) * 86_400;
        if until > i.not_after {
            eprintln!(
                "invpnctl: warning: the CA expires on {}, before this certificate would",
                unix_to_text(i.not_after)
            );
        }
    }
}

fn cert_new(m: &getopts::Matches, json: bool) -> Result<(), CtlError> {
    let mac = mac(m)?;
    let prefix = opt(m, "out");
    let (crt, key) = (with_ext(&prefix, "crt"), with_ext(&prefix, "key"));
    refuse_existing(&[&crt, &key])?;
    let ca = pki::load_ca(Path::new(&opt(m, "ca-dir")))?;
    let days = days(m, 825)?;
    warn_outlives_ca(&ca, days);
    let node = pki::new_node(&ca, mac, Validity::days_from_now(days), key_type(m)?)?;
    write_new(&key, &node.key_pem, 0o600)?;
    write_new(&crt, &node.cert_pem, 0o644)?;
    if json {
        let files = vec![
            WrittenFile { path: crt, what: "certificate" },
            WrittenFile { path: key, what: "key" },
        ];
        return print_json(&written_cert(files, &node.cert_pem)?);
    }
    outln!(
        "certificate for {mac} written: {} (and its key {}, mode 0600)",
        crt.display(),
        key.display()
    )?;
    Ok(())
}

fn cert_request(m: &getopts::Matches, json: bool) -> Result<(), CtlError> {
    let mac = mac(m)?;
    let prefix = opt(m, "out");
    let (csr, key) = (with_ext(&prefix, "csr"), with_ext(&prefix, "key"));
    refuse_existing(&[&csr, &key])?;
    let (csr_pem, key_pem) = pki::new_request(mac, key_type(m)?)?;
    write_new(&key, &key_pem, 0o600)?;
    write_new(&csr, &csr_pem, 0o644)?;
    if json {
        let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .map_err(|err| e(format!("reading back the request: {err}")))?;
        let request = RequestFields::from_der(der.as_ref()).map_err(e)?;
        let written = vec![
            WrittenFile { path: csr, what: "certificate signing request" },
            WrittenFile { path: key, what: "key" },
        ];
        return print_json(&Written { written, certificate: None, request: Some(request) });
    }
    outln!(
        "key {} (mode 0600, stays on this node) and request {} for {mac} written;",
        key.display(),
        csr.display()
    )?;
    outln!(
        "sign the request on the CA host: invpnctl cert sign --ca-dir DIR --csr {} --out {}",
        csr.display(),
        with_ext(&prefix, "crt").display()
    )?;
    Ok(())
}

fn cert_sign(m: &getopts::Matches, json: bool) -> Result<(), CtlError> {
    let csr_path = PathBuf::from(opt(m, "csr"));
    let out = PathBuf::from(opt(m, "out"));
    refuse_existing(&[&out])?;
    let csr = std::fs::read_to_string(&csr_path)
        .map_err(|err| file_error(format!("{}: cannot read: {err}", csr_path.display())))?;
    let ca = pki::load_ca(Path::new(&opt(m, "ca-dir")))?;
    let days = days(m, 825)?;
    warn_outlives_ca(&ca, days);
    let (pem, mac) = pki::sign_request(&ca, &csr, Validity::days_from_now(days))
        .map_err(|err| file_error(format!("{}: {err}", csr_path.display())))?;
    write_new(&out, &pem, 0o644)?;
    if json {
        let files = vec![WrittenFile { path: out, what: "certificate" }];
        return print_json(&written_cert(files, &pem)?);
    }
    outln!("certificate for {mac} (X.509 v3) written: {}", out.display())?;
    Ok(())
}

fn cert_show(m: &getopts::Matches, json: bool) -> Result<(), CtlError> {
    let (shown, text) = inspect::show(&m.free[0], now())?;
    if json {
        return print_json(&shown);
    }
    out!("{text}")?;
    Ok(())
}

fn cert_verify(
    m: &getopts::Matches,
    json: bool,
    ca_default: Option<PathBuf>,
) -> Result<u8, CtlError> {
    let ca = m.opt_str("ca").or_else(|| ca_default.map(|p| p.display().to_string()));
    let crls = m.opt_strs("crl");
    let inputs = verify::Inputs { file: &m.free[0], ca: ca.as_deref(), crls: &crls, now: now() };
    let report = verify::verify(&inputs)?;
    if json {
        print_json(&report)?;
    } else {
        out!("{}", verify::text(&report))?;
    }
    Ok(if report.valid { 0 } else { 1 })
}
