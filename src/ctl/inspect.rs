//! `invpnctl cert show`: what a certificate (or each of a chain) or a
//! certificate signing request says, for people or as JSON.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use serde::Serialize;
use x509_parser::prelude::*;

use super::CtlError;
use crate::tls::cert_info::{key_type, unix_to_text, CertInfo};

/// What a PEM (or DER) file holds.
#[derive(Debug)]
pub enum Contents {
    /// Certificates: a node's, perhaps followed by intermediates, or a CA's.
    Certificates(Vec<CertificateDer<'static>>),
    /// A certificate signing request.
    Request(CertificateSigningRequestDer<'static>),
}

/// Reads `file`: PEM certificates, a PEM certificate request, or one DER
/// certificate. Errors name the file.
pub fn read(file: &str) -> Result<Contents, CtlError> {
    let bytes =
        std::fs::read(file).map_err(|err| CtlError::File(format!("{file}: cannot read: {err}")))?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        if bytes.first() == Some(&0x30) {
            return Ok(Contents::Certificates(vec![CertificateDer::from(bytes)]));
        }
        return Err(CtlError::File(format!("{file}: no certificate in this file")));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|err| CtlError::File(format!("{file}: bad PEM: {err}")))?;
    if !certs.is_empty() {
        return Ok(Contents::Certificates(certs));
    }
    match CertificateSigningRequestDer::from_pem_slice(&bytes) {
        Ok(csr) => Ok(Contents::Request(csr)),
        Err(_) => Err(CtlError::File(format!(
            "{file}: no certificate in this file (nor a certificate signing request)"
        ))),
    }
}

/// The fields of a certificate, as `cert show` and `cert verify` print them.
#[derive(Debug, Clone, Serialize)]
pub struct CertFields {
    /// The node MAC in the Common Name, if it is one (never for a CA).
    pub mac: Option<String>,
    /// Why there is no MAC, if there is none.
    pub mac_problem: Option<String>,
    /// The first Common Name.
    pub common_name: Option<String>,
    /// The subject, as text.
    pub subject: String,
    /// The issuer, as text.
    pub issuer: String,
    /// The serial number, hex bytes separated by colons.
    pub serial: String,
    /// The X.509 version: 1 or 3.
    pub version: u32,
    /// Validity start, `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_before: String,
    /// Validity end, `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_after: String,
    /// Validity start, Unix seconds.
    pub not_before_unix: i64,
    /// Validity end, Unix seconds.
    pub not_after_unix: i64,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// The key type, e.g. "ECDSA P-256".
    pub key_type: String,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// The keyUsage bits set (`digitalSignature`, ...), `None` without the extension.
    pub key_usage: Option<Vec<String>>,
    /// The extendedKeyUsage purposes (`serverAuth`, ...), `None` without the extension.
    pub extended_key_usage: Option<Vec<String>>,
    /// The SHA-256 fingerprint of the DER, hex bytes separated by colons.
    pub sha256: String,
}

fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

impl CertFields {
    /// Reads a DER certificate; `now` in Unix seconds.
    pub fn from_der(der: &[u8], now: i64) -> Result<CertFields, String> {
        let info = CertInfo::from_der(der)?;
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
        let key_usage = match cert.key_usage() {
            Ok(Some(ku)) => {
                let k = ku.value;
                let bits = [
                    (k.digital_signature(), "digitalSignature"),
                    (k.non_repudiation(), "nonRepudiation"),
                    (k.key_encipherment(), "keyEncipherment"),
                    (k.data_encipherment(), "dataEncipherment"),
                    (k.key_agreement(), "keyAgreement"),
                    (k.key_cert_sign(), "keyCertSign"),
                    (k.crl_sign(), "cRLSign"),
                    (k.encipher_only(), "encipherOnly"),
                    (k.decipher_only(), "decipherOnly"),
                ];
                Some(bits.iter().filter(|(on, _)| *on).map(|(_, n)| n.to_string()).collect())
            }
            Ok(None) => None,
            Err(e) => return Err(format!("bad keyUsage extension ({e})")),
        };
        let extended_key_usage = match cert.extended_key_usage() {
            Ok(Some(eku)) => {
                let e = eku.value;
                let mut v: Vec<String> = [
                    (e.any, "any"),
                    (e.server_auth, "serverAuth"),
                    (e.client_auth, "clientAuth"),
                    (e.code_signing, "codeSigning"),
                    (e.email_protection, "emailProtection"),
                    (e.time_stamping, "timeStamping"),
                    (e.ocsp_signing, "OCSPSigning"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| n.to_string())
                .collect();
                v.extend(e.other.iter().map(|o| o.to_id_string()));
                Some(v)
            }
            Ok(None) => None,
            Err(e) => return Err(format!("bad extendedKeyUsage extension ({e})")),
        };
        let (mac, mac_problem) = match (info.is_ca, info.mac()) {
            (true, _) => (None, Some("a CA certificate".to_string())),
            (false, Ok(m)) => (Some(m.to_string()), None),
            (false, Err(why)) => (None, Some(why)),
        };
        Ok(CertFields {
            mac,
            mac_problem,
            common_name: info.common_name.clone(),
            subject: info.subject.clone(),
            issuer: info.issuer.clone(),
            serial: cert.raw_serial_as_string(),
            version: info.version,
            not_before: unix_to_text(info.not_before),
            not_after: unix_to_text(info.not_after),
            not_before_unix: info.not_before,
            not_after_unix: info.not_after,
            days_left: info.days_left(now),
            key_type: info.key_type.clone(),
            is_ca: info.is_ca,
            key_usage,
            extended_key_usage,
            sha256: fingerprint(der),
        })
    }

    /// The `cert show` text.
    pub fn text(&self, now: i64) -> String {
        let mac = match (&self.mac, self.is_ca) {
            (Some(m), _) => m.clone(),
            (None, true) => "- (a CA certificate)".to_string(),
            (None, false) => format!("NONE: {}", self.mac_problem.as_deref().unwrap_or("")),
        };
        let state = if now < self.not_before_unix {
            "NOT VALID YET".to_string()
        } else if self.days_left < 0 {
            format!("EXPIRED {} day(s) ago", -self.days_left)
        } else {
            format!("{} day(s) left", self.days_left)
        };
        let list = |v: &Option<Vec<String>>| match v {
            None => "- (no extension)".to_string(),
            Some(v) => v.join(", "),
        };
        let mut s = String::new();
        s.push_str(&format!("  MAC:          {mac}\n"));
        s.push_str(&format!("  subject:      {}\n", self.subject));
        s.push_str(&format!("  issuer:       {}\n", self.issuer));
        s.push_str(&format!("  serial:       {}\n", self.serial));
        s.push_str(&format!(
            "  version:      X.509 v{}{}\n",
            self.version,
            if self.version == 3 {
                ""
            } else {
                " (refused by TLS peers: re-issue with `invpnctl cert sign`)"
            }
        ));
        s.push_str(&format!("  valid from:   {}\n", self.not_before));
        s.push_str(&format!("  valid until:  {} ({state})\n", self.not_after));
        s.push_str(&format!("  key:          {}\n", self.key_type));
        s.push_str(&format!("  CA:           {}\n", if self.is_ca { "yes" } else { "no" }));
        s.push_str(&format!("  key usage:    {}\n", list(&self.key_usage)));
        s.push_str(&format!("  ext. usage:   {}\n", list(&self.extended_key_usage)));
        s.push_str(&format!("  SHA-256:      {}\n", self.sha256));
        s
    }
}

/// The fields of a certificate signing request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestFields {
    /// The node MAC in the Common Name, if it is one.
    pub mac: Option<String>,
    /// Why there is no MAC, if there is none.
    pub mac_problem: Option<String>,
    /// The first Common Name.
    pub common_name: Option<String>,
    /// The subject, as text.
    pub subject: String,
    /// The key type, e.g. "ECDSA P-256".
    pub key_type: String,
    /// Whether the request's self-signature verifies.
    pub signature_valid: bool,
}

impl RequestFields {
    /// Reads a DER certificate signing request.
    pub fn from_der(der: &[u8]) -> Result<RequestFields, String> {
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
            .map_err(|e| format!("not a valid certificate signing request ({e})"))?;
        let info = &csr.certification_request_info;
        let common_name = info
            .subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .map(str::to_string);
        let (mac, mac_problem) = match &common_name {
            None => (None, Some("the request has no Common Name".to_string())),
            Some(cn) => match cn.parse::<crate::core::Mac>() {
                Ok(m) if m.is_node_address() => (Some(m.to_string()), None),
                Ok(m) => {
                    (None, Some(format!("the request's Common Name {m} is not a unicast MAC")))
                }
                Err(_) => {
                    (None, Some(format!("the request's Common Name {cn:?} is not a MAC address")))
                }
            },
        };
        Ok(RequestFields {
            mac,
            mac_problem,
            common_name,
            subject: info.subject.to_string(),
            key_type: key_type(&info.subject_pki),
            signature_valid: csr.verify_signature().is_ok(),
        })
    }

    /// The `cert show` text.
    pub fn text(&self) -> String {
        let mac = match &self.mac {
            Some(m) => m.clone(),
            None => format!("NONE: {}", self.mac_problem.as_deref().unwrap_or("")),
        };
        let mut s = String::from("certificate signing request:\n");
        s.push_str(&format!("  MAC:          {mac}\n"));
        s.push_str(&format!("  subject:      {}\n", self.subject));
        s.push_str(&format!("  key:          {}\n", self.key_type));
        s.push_str(&format!(
            "  signature:    {}\n",
            if self.signature_valid { "valid" } else { "INVALID (corrupt or forged)" }
        ));
        s
    }
}

/// What `cert show --json` prints.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shown {
    /// A file of certificates.
    Certificates {
        /// The file read.
        file: String,
        /// Each certificate in it.
        certificates: Vec<CertFields>,
    },
    /// A file with a certificate signing request.
    Request {
        /// The file read.
        file: String,
        /// The request.
        request: RequestFields,
    },
}

/// `cert show FILE`: reads the file and describes what it holds.
pub fn show(file: &str, now: i64) -> Result<(Shown, String), CtlError> {
    let bad = |err: String| CtlError::File(format!("{file}: {err}"));
    match read(file)? {
        Contents::Certificates(certs) => {
            let mut text = String::new();
            let mut fields = Vec::new();
            for (i, der) in certs.iter().enumerate() {
                let f = CertFields::from_der(der, now).map_err(bad)?;
                if certs.len() > 1 {
                    text.push_str(&format!("certificate {} of {}:\n", i + 1, certs.len()));
                }
                text.push_str(&f.text(now));
                fields.push(f);
            }
            Ok((Shown::Certificates { file: file.to_string(), certificates: fields }, text))
        }
        Contents::Request(csr) => {
            let f = RequestFields::from_der(csr.as_ref()).map_err(bad)?;
            let text = f.text();
            Ok((Shown::Request { file: file.to_string(), request: f }, text))
        }
    }
}
