//! `invpnctl ca revoke` and `invpnctl ca crl`: the CA's revocation list.
//!
//! The CA directory keeps what the CRL is made from, as `openssl ca`
//! does: `revoked.txt` (one revoked certificate a line: serial, Unix time
//! of revocation, reason, subject) and `crlnumber` (the next CRL's number,
//! hex). Each run re-signs the whole list into `crl.pem` with the next
//! number and a new nextUpdate.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::RevocationReason;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::inspect::{self, Contents};
use super::CtlError;
use crate::pki::{self, Revoked};
use crate::tls::cert_info::unix_to_text;
use crate::tls::crl;

/// Days until a new CRL's nextUpdate when `--days` is not given (as
/// easy-rsa's `gen-crl`). invpnd keeps applying an out-of-date CRL, with a
/// warning; other tools (`cert verify`, OpenSSL) refuse it.
pub const DEFAULT_CRL_DAYS: u32 = 180;

/// The names `--reason` takes (RFC 5280's, as OpenSSL spells them).
pub const REASONS: &[(&str, RevocationReason)] = &[
    ("unspecified", RevocationReason::Unspecified),
    ("keyCompromise", RevocationReason::KeyCompromise),
    ("CACompromise", RevocationReason::CaCompromise),
    ("affiliationChanged", RevocationReason::AffiliationChanged),
    ("superseded", RevocationReason::Superseded),
    ("cessationOfOperation", RevocationReason::CessationOfOperation),
];

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

fn reason_name(r: Option<RevocationReason>) -> &'static str {
    r.and_then(|r| REASONS.iter().find(|(_, x)| *x == r)).map_or("unspecified", |(n, _)| n)
}

fn parse_reason(s: &str) -> Result<Option<RevocationReason>, CtlError> {
    REASONS.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)).map(|(_, r)| Some(*r)).ok_or_else(
        || {
            let names: Vec<&str> = REASONS.iter().map(|(n, _)| *n).collect();
            usage(format!("--reason {s:?}: expected one of {}", names.join(", ")))
        },
    )
}

/// The list of revoked certificates kept in the CA directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The certificates revoked, in the order they were.
    pub revoked: Vec<Revoked>,
    /// The number the next CRL gets.
    pub next_number: u64,
}

impl State {
    /// Reads `revoked.txt` and `crlnumber` of `dir` (neither is needed).
    pub fn load(dir: &Path) -> Result<State, CtlError> {
        let list = dir.join("revoked.txt");
        let text = match std::fs::read_to_string(&list) {
            Ok(t) => t,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(file_error(format!("{}: cannot read: {err}", list.display()))),
        };
        let revoked =
            parse_list(&text).map_err(|m| file_error(format!("{}:{m}", list.display())))?;
        let num = dir.join("crlnumber");
        let next_number = match std::fs::read_to_string(&num) {
            Ok(t) => u64::from_str_radix(t.trim(), 16).map_err(|_| {
                file_error(format!("{}: {:?} is not a CRL number in hex", num.display(), t.trim()))
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 1,
            Err(err) => return Err(file_error(format!("{}: cannot read: {err}", num.display()))),
        };
        Ok(State { revoked, next_number })
    }

    /// Writes both files (each replaced whole).
    fn save(&self, dir: &Path) -> Result<(), CtlError> {
        let mut text = String::from(
            "# Certificates revoked by this CA (invpnctl ca revoke); the CRL is made from it.\n\
             # serial  revoked-at(unix)  reason  subject\n",
        );
        for r in &self.revoked {
            text.push_str(&format!(
                "{} {} {} {}\n",
                r.serial,
                r.time,
                reason_name(r.reason),
                r.subject
            ));
        }
        replace(&dir.join("revoked.txt"), &text, 0o644)?;
        replace(&dir.join("crlnumber"), &format!("{:02x}\n", self.next_number), 0o644)
    }
}

/// Parses `revoked.txt`; errors are `line: what`.
fn parse_list(text: &str) -> Result<Vec<Revoked>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.splitn(4, ' ');
        let (Some(serial), Some(time), Some(reason)) = (f.next(), f.next(), f.next()) else {
            return Err(format!("{}: expected `serial time reason [subject]`", i + 1));
        };
        pki::parse_serial(serial).map_err(|err| format!("{}: {err}", i + 1))?;
        out.push(Revoked {
            serial: serial.to_ascii_lowercase(),
            time: time.parse().map_err(|_| format!("{}: {time:?} is not a Unix time", i + 1))?,
            reason: parse_reason(reason).map_err(|err| format!("{}: {err}", i + 1))?,
            subject: f.next().unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

/// Writes `path` through a temporary file and a rename, so that a reader
/// (a node reloading, rsync) never sees half of it.
fn replace(path: &Path, contents: &str, mode: u32) -> Result<(), CtlError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|err| {
        let _ = std::fs::remove_file(&tmp);
        file_error(format!("{}: cannot write: {err}", path.display()))
    })
}

/// Serial as `revoked.txt` and CRLs list it: lower-case hex bytes, colons.
fn canonical_serial(s: &str) -> Result<String, CtlError> {
    let bytes = pki::parse_serial(s).map_err(|err| usage(format!("--serial: {err}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

/// The serial and subject of a certificate issued by `ca`, or why not.
fn cert_of_ca(file: &str, ca: &pki::CertAndKey) -> Result<(String, String), CtlError> {
    let Contents::Certificates(certs) = inspect::read(file)? else {
        return Err(file_error(format!(
            "{file}: a certificate signing request, not a certificate"
        )));
    };
    let der = &certs[0];
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|err| file_error(format!("{file}: not a valid X.509 certificate ({err})")))?;
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
        .map_err(|err| e(format!("the CA certificate: {err}")))?;
    let (_, ca_cert) = X509Certificate::from_der(&ca_der)
        .map_err(|err| e(format!("the CA certificate: {err}")))?;
    if cert.issuer().as_raw() != ca_cert.subject().as_raw()
        || cert.verify_signature(Some(ca_cert.public_key())).is_err()
    {
        return Err(file_error(format!(
            "{file}: not issued by this CA ({}; the certificate's issuer is {}): nothing revoked",
            ca_cert.subject(),
            cert.issuer()
        )));
    }
    Ok((
        crl::serial(der).map_err(|m| file_error(format!("{file}: {m}")))?,
        cert.subject().to_string(),
    ))
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Written {
    crl: PathBuf,
    number: u64,
    this_update: String,
    next_update: String,
    /// What this run added.
    added: Vec<RevokedEntry>,
    /// Everything the CRL revokes.
    revoked: Vec<RevokedEntry>,
}

#[derive(Debug, Serialize)]
struct RevokedEntry {
    serial: String,
    revoked_at: String,
    reason: &'static str,
    subject: String,
}

fn entry(r: &Revoked) -> RevokedEntry {
    RevokedEntry {
        serial: r.serial.clone(),
        revoked_at: unix_to_text(r.time),
        reason: reason_name(r.reason),
        subject: r.subject.clone(),
    }
}

/// `ca revoke` (with certificates or serials to add) and `ca crl` (none).
pub fn run(m: &getopts::Matches, json: bool, adding: bool) -> Result<(), CtlError> {
    let dir = PathBuf::from(m.opt_str("ca-dir").unwrap_or_default());
    let ca = pki::load_ca(&dir)?;
    let days = match m.opt_str("days") {
        None => DEFAULT_CRL_DAYS,
        Some(d) => match d.parse::<u32>() {
            Ok(n) if (1..=3650).contains(&n) => n,
            _ => {
                return Err(usage(format!(
                    "--days {d:?}: expected a number of days from 1 to 3650"
                )))
            }
        },
    };
    let out = m.opt_str("out").map_or_else(|| dir.join("crl.pem"), PathBuf::from);
    let mut state = State::load(&dir)?;
    let now = time::OffsetDateTime::now_utc();
    let mut added = Vec::new();
    if adding {
        let reason = m.opt_str("reason").map(|r| parse_reason(&r)).transpose()?.flatten();
        let mut wanted: Vec<(String, String)> = Vec::new();
        for f in m.opt_strs("cert") {
            wanted.push(cert_of_ca(&f, &ca)?);
        }
        for s in m.opt_strs("serial") {
            wanted.push((canonical_serial(&s)?, String::new()));
        }
        if wanted.is_empty() {
            return Err(usage("give the certificate to revoke: --cert FILE or --serial HEX"));
        }
        for (serial, subject) in wanted {
            if let Some(r) = state.revoked.iter().find(|r| r.serial == serial) {
                eprintln!(
                    "invpnctl: {serial} was already revoked on {}; kept as it was",
                    unix_to_text(r.time)
                );
                continue;
            }
            let r = Revoked { serial, time: now.unix_timestamp(), reason, subject };
            added.push(r.clone());
            state.revoked.push(r);
        }
    }
    let number = state.next_number;
    let this_update = now - time::Duration::minutes(5);
    let next_update = now + time::Duration::days(i64::from(days));
    let pem = pki::sign_crl(&ca, &state.revoked, number, this_update, next_update)?;
    state.next_number = number + 1;
    // the list first: a CRL that lost an entry would un-revoke it
    state.save(&dir)?;
    replace(&out, &pem, 0o644)?;
    let next_text = unix_to_text(next_update.unix_timestamp());
    if json {
        let w = Written {
            crl: out,
            number,
            this_update: unix_to_text(this_update.unix_timestamp()),
            next_update: next_text,
            added: added.iter().map(entry).collect(),
            revoked: state.revoked.iter().map(entry).collect(),
        };
        outln!("{}", serde_json::to_string_pretty(&w)?)?;
        return Ok(());
    }
    for r in &added {
        outln!(
            "revoked: serial {}{}",
            r.serial,
            if r.subject.is_empty() { String::new() } else { format!(" ({})", r.subject) }
        )?;
    }
    outln!(
        "CRL written: {} (CRL number {number:x}, {} revoked, next update {next_text})",
        out.display(),
        state.revoked.len()
    )?;
    outln!(
        "copy it to every node (their [ssl] crl) and reload them (invpnctl reload); \
         re-sign it before {next_text} with invpnctl ca crl"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revoked_list_reads_back_what_was_written() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(State::load(d.path()).unwrap(), State { revoked: vec![], next_number: 1 });
        let s = State {
            revoked: vec![Revoked {
                serial: "01:ab".into(),
                time: 1_700_000_000,
                reason: Some(RevocationReason::KeyCompromise),
                subject: "CN=02:50:56:00:00:01".into(),
            }],
            next_number: 0x1f,
        };
        s.save(d.path()).unwrap();
        assert_eq!(State::load(d.path()).unwrap(), s);
        assert_eq!(std::fs::read_to_string(d.path().join("crlnumber")).unwrap(), "1f\n");
        std::fs::write(d.path().join("revoked.txt"), "# c\n01:ab 17 nope\n").unwrap();
        let err = State::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("revoked.txt:2: --reason \"nope\""), "{err}");
        assert_eq!(canonical_serial("0x1AB").unwrap(), "01:ab");
        assert!(canonical_serial("zz").is_err());
    }
}
