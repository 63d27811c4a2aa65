//! Certificate revocation lists (`[ssl] crl`): read (PEM, one or more, or
//! DER), checked against the network's CA when loaded, then handed to
//! webpki, which checks every peer chain against them at each handshake.
//!
//! The policy, chosen so that a mistake with the CRL cannot cut the mesh
//! apart while a revoked node is still shut out:
//!
//! * every certificate of a peer's chain (the node's, and intermediates) is
//!   checked against the CRLs of its issuer ([`DEPTH`]);
//! * a certificate whose issuer has no CRL in the file is accepted
//!   ([`UNKNOWN_STATUS`]): a CRL of the root does not lock out nodes
//!   certified by an intermediate that publishes none;
//! * a CRL past its nextUpdate still revokes what it lists, with a warning
//!   at start and on reload ([`EXPIRATION`]), as OpenVPN's `crl-verify`
//!   does; refusing every peer when a CRL was not re-signed in time would
//!   stop the whole network;
//! * what is refused when loaded (start, `invpnd -t`, reload): a file that
//!   cannot be read or parsed, a CRL not issued and signed by a CA of
//!   `[ssl] ca`, a CA whose keyUsage does not allow CRL signing.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use webpki::{
    CertRevocationList, ExpirationPolicy, OwnedCertRevocationList, RevocationCheckDepth,
    UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::TlsError;
use crate::tls::cert_info::unix_to_text;

/// Which certificates of a chain are checked: all but the trust anchor.
pub const DEPTH: RevocationCheckDepth = RevocationCheckDepth::Chain;
/// A certificate whose issuer has no CRL is accepted.
pub const UNKNOWN_STATUS: UnknownStatusPolicy = UnknownStatusPolicy::Allow;
/// A CRL past its nextUpdate still applies (a warning says it is out of date).
pub const EXPIRATION: ExpirationPolicy = ExpirationPolicy::Ignore;

/// What one CRL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// The issuer (the CA), as text.
    pub issuer: String,
    /// The CRL number, in hex, if it has one.
    pub number: Option<String>,
    /// When it was issued (Unix seconds).
    pub this_update: i64,
    /// When the next one is due (Unix seconds), if it says.
    pub next_update: Option<i64>,
    /// The revoked serial numbers, hex bytes separated by colons.
    pub revoked: Vec<String>,
}

impl CrlInfo {
    /// Whether it is past its nextUpdate at `now`.
    pub fn expired(&self, now: i64) -> bool {
        self.next_update.is_some_and(|t| t < now)
    }
}

/// The CRLs of `[ssl] crl`, checked.
#[derive(Debug, Clone)]
pub struct Crls {
    /// The file they came from.
    pub path: PathBuf,
    /// What each says, in file order.
    pub info: Vec<CrlInfo>,
    /// The lists as DER (for rustls's client verifier).
    pub ders: Vec<CertificateRevocationListDer<'static>>,
    /// The lists parsed by webpki (for the server-side check).
    pub parsed: std::sync::Arc<[CertRevocationList<'static>]>,
}

impl Crls {
    /// Warnings worth logging at `now`: CRLs past their nextUpdate.
    pub fn warnings(&self, now: i64) -> Vec<String> {
        self.info
            .iter()
            .filter(|i| i.expired(now))
            .map(|i| {
                format!(
                    "{}: the CRL of {} is out of date (next update was due {}): it still \
                     revokes what it lists, but re-sign it (invpnctl ca crl) and distribute it",
                    self.path.display(),
                    i.issuer,
                    unix_to_text(i.next_update.unwrap_or_default())
                )
            })
            .collect()
    }

    /// Whether `serial` (hex bytes separated by colons) is revoked by any.
    pub fn revokes(&self, serial: &str) -> bool {
        self.info.iter().any(|i| i.revoked.iter().any(|s| s.eq_ignore_ascii_case(serial)))
    }

    /// One line for `invpnd -t` and the logs: each CRL's issuer, number,
    /// size and dates.
    pub fn summary(&self, now: i64) -> String {
        let parts: Vec<String> = self
            .info
            .iter()
            .map(|i| {
                format!(
                    "{} revoked by {}{}, next update {}{}",
                    i.revoked.len(),
                    i.issuer,
                    i.number.as_ref().map_or(String::new(), |n| format!(" (CRL number {n})")),
                    i.next_update.map_or("not given".to_string(), unix_to_text),
                    if i.expired(now) { " (OUT OF DATE)" } else { "" }
                )
            })
            .collect();
        format!("{} ({})", self.path.display(), parts.join("; "))
    }
}

/// A certificate's serial number as CRLs list it here: hex bytes
/// separated by colons.
pub fn serial(cert_der: &[u8]) -> Result<String, String> {
    X509Certificate::from_der(cert_der)
        .map(|(_, c)| c.raw_serial_as_string())
        .map_err(|e| format!("not a valid X.509 certificate ({e})"))
}

/// Splits CRL bytes into DER lists: PEM `X509 CRL` blocks (one or more),
/// or a single DER list.
pub fn parse(bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Ok(vec![CertificateRevocationListDer::from(bytes.to_vec())]);
    }
    let ders: Vec<_> = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if ders.is_empty() {
        return Err("no X509 CRL in this file (expected PEM `X509 CRL` blocks, or DER)".into());
    }
    Ok(ders)
}

/// webpki's reading of one DER list, or why it refuses it.
pub fn to_webpki(der: &[u8]) -> Result<CertRevocationList<'static>, String> {
    OwnedCertRevocationList::from_der(der)
        .map(CertRevocationList::from)
        .map_err(|e| format!("not a certificate revocation list webpki accepts ({e:?})"))
}

fn err(path: &Path, msg: String) -> TlsError {
    TlsError::Crl { path: path.to_path_buf(), msg }
}

/// Reads the CRLs in `path` and checks each against the CA certificates
/// `cas` (DER): issued by one of them, signed with its key, the CA allowed
/// to sign CRLs.
pub fn load(path: &Path, cas: &[CertificateDer<'_>]) -> Result<Crls, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        setting: "crl",
        err: e,
    })?;
    check(path, &bytes, cas)
}

/// [`load`] on bytes already read.
pub fn check(path: &Path, bytes: &[u8], cas: &[CertificateDer<'_>]) -> Result<Crls, TlsError> {
    let ders = parse(bytes).map_err(|m| err(path, m))?;
    let mut cas_parsed = Vec::new();
    for der in cas {
        let (_, c) = X509Certificate::from_der(der)
            .map_err(|e| err(path, format!("cannot read the CA certificate ({e})")))?;
        cas_parsed.push(c);
    }
    let mut info = Vec::new();
    let mut parsed = Vec::new();
    for (n, der) in ders.iter().enumerate() {
        let which = if ders.len() > 1 { format!("CRL #{}: ", n + 1) } else { String::new() };
        let (rest, crl) = CertificateRevocationList::from_der(der).map_err(|e| {
            err(path, format!("{which}not a valid certificate revocation list ({e})"))
        })?;
        if !rest.is_empty() {
            return Err(err(path, format!("{which}trailing bytes after the CRL")));
        }
        let issuer = crl.issuer().to_string();
        let Some(ca) = cas_parsed.iter().find(|c| c.subject().as_raw() == crl.issuer().as_raw())
        else {
            let names: Vec<String> = cas_parsed.iter().map(|c| c.subject().to_string()).collect();
            return Err(err(
                path,
                format!(
                    "{which}issued by {issuer}, not by the network's CA ({}): \
                     [ssl] crl takes the CRLs of the CA in [ssl] ca",
                    names.join(", ")
                ),
            ));
        };
        if let Ok(Some(ku)) = ca.key_usage() {
            if !ku.value.crl_sign() {
                return Err(err(
                    path,
                    format!(
                        "{which}the CA {issuer} may not sign CRLs (its keyUsage lacks cRLSign): \
                         peers would refuse every certificate it issued"
                    ),
                ));
            }
        }
        crl.verify_signature(ca.public_key()).map_err(|_| {
            err(
                path,
                format!(
                    "{which}its signature does not verify with the key of the CA {issuer} \
                     (a CRL of another CA of the same name, or a corrupt file)"
                ),
            )
        })?;
        parsed.push(to_webpki(der).map_err(|m| err(path, format!("{which}{m}")))?);
        info.push(CrlInfo {
            issuer,
            number: crl.crl_number().map(|n| format!("{n:x}")),
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            revoked: crl.iter_revoked_certificates().map(|r| r.raw_serial_as_string()).collect(),
        });
    }
    Ok(Crls { path: path.to_path_buf(), info, ders, parsed: parsed.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{self, KeyType, Validity};

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn crl_of(ca: &pki::CertAndKey, serials: &[&str], next_days: i64) -> String {
        let now = time::OffsetDateTime::now_utc();
        let this = now - time::Duration::days(2);
        pki::sign_crl(ca, &revoked(serials), 7, this, now + time::Duration::days(next_days))
            .unwrap()
    }

    fn revoked(serials: &[&str]) -> Vec<pki::Revoked> {
        serials
            .iter()
            .map(|s| pki::Revoked {
                serial: s.to_string(),
                time: 1_700_000_000,
                reason: None,
                subject: String::new(),
            })
            .collect()
    }

    fn ca(name: &str) -> pki::CertAndKey {
        pki::new_ca(name, Validity::days_from_now(30), KeyType::EcdsaP256).unwrap()
    }

    #[test]
    fn reads_pem_lists_and_der_and_says_what_they_hold() {
        let a = ca("crl test CA");
        let pem = crl_of(&a, &["01:02:03", "7f:aa"], 30);
        let c = check(Path::new("x.crl"), pem.as_bytes(), &[der(&a.cert_pem)]).unwrap();
        assert_eq!(c.info.len(), 1);
        assert_eq!(c.info[0].revoked, ["01:02:03", "7f:aa"]);
        assert_eq!(c.info[0].number.as_deref(), Some("7"));
        assert!(c.revokes("7F:AA") && !c.revokes("01:02"));
        assert!(c.warnings(time::OffsetDateTime::now_utc().unix_timestamp()).is_empty());
        assert!(c.summary(0).contains("2 revoked by CN=crl test CA (CRL number 7)"));
        // the same list in DER; two lists in one PEM file
        let d = parse(pem.as_bytes()).unwrap().remove(0);
        assert_eq!(check(Path::new("x"), d.as_ref(), &[der(&a.cert_pem)]).unwrap().info.len(), 1);
        let two = format!("{pem}{}", crl_of(&a, &[], 30));
        assert_eq!(
            check(Path::new("x"), two.as_bytes(), &[der(&a.cert_pem)]).unwrap().info.len(),
            2
        );
    }

    #[test]
    fn refuses_what_would_not_work_with_reasons() {
        let a = ca("crl test CA");
        let cas = [der(&a.cert_pem)];
        let e = |bytes: &[u8]| check(Path::new("/x/n.crl"), bytes, &cas).unwrap_err().to_string();
        // unreadable
        let m = load(Path::new("/nonexistent/n.crl"), &cas).unwrap_err().to_string();
        assert!(m.starts_with("/nonexistent/n.crl: cannot read"), "{m}");
        // not a CRL: PEM of something else, garbage DER, broken PEM
        assert!(e(a.cert_pem.as_bytes()).contains("no X509 CRL in this file"));
        assert!(e(b"\x30\x03\x02\x01\x01").contains("not a valid certificate revocation list"));
        let pem = crl_of(&a, &["01"], 30);
        let cut = &pem[..pem.len() - 40];
        assert!(e(cut.as_bytes()).starts_with("/x/n.crl: "), "{}", e(cut.as_bytes()));
        // issued by another CA
        let other = ca("other CA");
        let m = e(crl_of(&other, &[], 30).as_bytes());
        assert!(
            m.contains("issued by CN=other CA, not by the network's CA (CN=crl test CA)"),
            "{m}"
        );
        // another CA of the same name: the signature does not verify
        let twin = ca("crl test CA");
        let m = e(crl_of(&twin, &[], 30).as_bytes());
        assert!(m.contains("signature does not verify"), "{m}");
        // a CA whose keyUsage does not allow CRL signing (same name and key
        // as the one that signed the CRL)
        let kp = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "ku CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let signer = pki::CertAndKey {
            cert_pem: p.self_signed(&kp).unwrap().pem(),
            key_pem: kp.serialize_pem(),
        };
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let no_crl_sign = der(&p.self_signed(&kp).unwrap().pem());
        let m = check(Path::new("k.crl"), crl_of(&signer, &[], 30).as_bytes(), &[no_crl_sign])
            .unwrap_err()
            .to_string();
        assert!(m.contains("may not sign CRLs (its keyUsage lacks cRLSign)"), "{m}");
        // an out-of-date CRL loads, with a warning
        let old = crl_of(&a, &["01"], -1);
        let c = check(Path::new("old.crl"), old.as_bytes(), &cas).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(c.warnings(now)[0].contains("out of date"), "{:?}", c.warnings(now));
        assert!(c.summary(now).contains("(OUT OF DATE)"));
    }
}
